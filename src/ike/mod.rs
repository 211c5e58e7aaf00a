//! IKEv2 (RFC 7296): algorithms, key derivation, proposals, and (next) the IKE SA state machine.
