"""The security headers of pages, share answers and files read from the drive, made in one place."""

from __future__ import annotations

PAGE_CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'unsafe-inline'; media-src 'self' blob:; img-src 'self' blob: data:; frame-ancestors 'none'"
# A file in the drive may be anyone's content (a download from the web, a shared file) on our
# origin: a sandbox gives it an origin of its own, so an HTML or SVG file opened in a
# browser cannot script the drive with the reader's login.
FILE_CSP = "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'"


def page_headers(csp: str = PAGE_CSP) -> list[tuple[str, str]]:
    """Anti-framing, no sniffing, no Referer (share URLs carry their token), the given CSP."""
    return [
        ("Content-Security-Policy", csp),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
    ]


def sandboxed_files(app):
    """WSGI middleware: GET and HEAD answers of the drive carry the file sandbox."""

    def middleware(environ, start_response):
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return app(environ, start_response)

        def start(status, headers, exc_info=None):
            return start_response(status, [*headers, ("Content-Security-Policy", FILE_CSP),
                                           ("X-Content-Type-Options", "nosniff")], exc_info)

        return app(environ, start)

    return middleware
