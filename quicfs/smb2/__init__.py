"""Sans-I/O SMB2/3 wire format and crypto: bytes in, values out. No trio, no sockets, no clock."""
