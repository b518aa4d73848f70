//! `acme-issuer`: leader-gated ACME issuance for Fairway (see the crate README).
