//! Wire formats: IKEv2 (RFC 7296), ESP (RFC 4303), the UDP 4500 demux (RFC 3948).
