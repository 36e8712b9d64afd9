//! Audit (being built).
