"""fetchdrive: the WebDAV drive, its HTTP API and web page, and the command line."""
