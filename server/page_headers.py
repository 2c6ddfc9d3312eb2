"""The security headers every page and share answer carries, made in one place."""

from __future__ import annotations

PAGE_CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'unsafe-inline'; media-src 'self' blob:; img-src 'self' blob: data:; frame-ancestors 'none'"
# A shared file is someone else's content on our origin: a sandbox gives it an origin of
# its own, so an HTML or SVG file cannot script the drive with the visitor's login.
SHARED_FILE_CSP = "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'"


def page_headers(csp: str = PAGE_CSP) -> list[tuple[str, str]]:
    """Anti-framing, no sniffing, no Referer (share URLs carry their token), the given CSP."""
    return [
        ("Content-Security-Policy", csp),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
    ]
