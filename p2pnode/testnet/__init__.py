"""Local multi-node networks on 127.0.0.1 (see testnet/README.md)."""
