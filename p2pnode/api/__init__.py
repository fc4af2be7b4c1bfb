"""Local admin API: newline-delimited JSON over TCP on 127.0.0.1, token-authenticated."""
