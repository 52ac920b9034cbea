//! Certn simulator (in progress).
