//! Runnable stead servers: the binaries in `src/bin/` (`hello`, `json-api`,
//! `echo`, `client`). This library only compiles the README's code as a
//! doctest, so the API screenful there cannot rot.

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
