#![no_std]
#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(
    html_logo_url = "https://raw.githubusercontent.com/RustCrypto/media/8f1a9894/logo.svg",
    html_favicon_url = "https://raw.githubusercontent.com/RustCrypto/media/8f1a9894/logo.svg"
)]

//! If you are only using the low-level [`scrypt`] function instead of the
//! higher-level [`Scrypt`] struct to produce/verify hash strings,
//! it's recommended to disable default features in your `Cargo.toml`:
//!
//! ```toml
//! [dependencies]
//! scrypt = { version = "0.12", default-features = false }
//! ```
//!
//! # Usage (simple PHC password hash usage with default params)
//!
#![cfg_attr(
    all(feature = "alloc", feature = "getrandom", feature = "phc"),
    doc = "```"
)]
#![cfg_attr(
    not(all(feature = "alloc", feature = "getrandom", feature = "phc")),
    doc = "```ignore"
)]
//! # fn main() -> Result<(), Box<dyn core::error::Error>> {
//! // NOTE: example requires `getrandom` feature is enabled
//!
//! use scrypt::{
//!     password_hash::{
//!         PasswordHasher, PasswordVerifier, phc::{PasswordHash, Salt}
//!     },
//!     Scrypt
//! };
//!
//! let scrypt = Scrypt::default(); // Uses `Params::RECOMMENDED`
//! let password = b"hunter42"; // Bad password; don't actually use!
//!
//! // Hash password to PHC string ($scrypt$...)
//! let hash: PasswordHash = scrypt.hash_password(password)?;
//! let hash_string = hash.to_string();
//!
//! // Verify password against PHC string
//! let parsed_hash = PasswordHash::new(&hash_string)?;
//! scrypt.verify_password(password, &parsed_hash)?;
//! # Ok(())
//! # }
//! ```

#[macro_use]
extern crate alloc;

use pbkdf2::pbkdf2_hmac;
use sha2::Sha256;

mod block_mix;
/// Errors for `scrypt` operations.
pub mod errors;
mod params;
mod romix;
mod table;
#[cfg(all(target_arch = "x86_64", not(feature = "parallel")))]
mod romix_x2;

#[cfg(feature = "mcf")]
pub mod mcf;
#[cfg(feature = "phc")]
pub mod phc;

pub use crate::params::Params;

#[cfg(feature = "kdf")]
pub use kdf::{self, Kdf, Pbkdf};
#[cfg(feature = "password-hash")]
pub use password_hash;

#[cfg(all(doc, feature = "password-hash"))]
use password_hash::{CustomizedPasswordHasher, PasswordHasher, PasswordVerifier};

/// The scrypt key derivation function.
///
/// # Arguments
/// - `password` - The password to process as a byte vector
/// - `salt` - The salt value to use as a byte vector
/// - `params` - The `ScryptParams` to use
/// - `output` - The resulting derived key is returned in this byte vector.
///   **WARNING: Make sure to compare this value in constant time!**
///
/// # Errors
/// Returns [`errors::InvalidOutputLen`] if `output` does not satisfy the following condition:
///
/// ```text
/// output.len() > 0 && output.len() <= (2^32 - 1) * 32
/// ```
///
/// # Note about output lengths
/// The output size is determined entirely by size of the `output` parameter.
///
/// If the length of the [`Params`] have been customized using the [`Params::new_with_output_len`]
/// constructor, that length is ignored and the length of `output` is used instead.
pub fn scrypt(
    password: &[u8],
    salt: &[u8],
    params: &Params,
    output: &mut [u8],
) -> Result<(), errors::InvalidOutputLen> {
    // This check required by Scrypt:
    // check output.len() > 0 && output.len() <= (2^32 - 1) * 32
    if output.is_empty() || output.len() / 32 > 0xffff_ffff {
        return Err(errors::InvalidOutputLen);
    }

    // The checks in the ScryptParams constructor guarantee
    // that the following is safe:
    let n = 1 << params.log_n;
    let r128 = (params.r as usize) * 128;
    let pr128 = (params.p as usize) * r128;
    let nr128 = n * r128;

    let mut b = vec![0u8; pr128];
    pbkdf2_hmac::<Sha256>(password, salt, 1, &mut b);

    #[cfg(not(feature = "parallel"))]
    romix_sequential(nr128, r128, n, &mut b);
    #[cfg(feature = "parallel")]
    romix_parallel(nr128, r128, n, &mut b);

    pbkdf2_hmac::<Sha256>(password, &b, 1, output);
    Ok(())
}

#[cfg(not(feature = "parallel"))]
fn romix_sequential(nr128: usize, r128: usize, n: usize, b: &mut [u8]) {
    // sluice's changes (see vendor/README.md). Where the CPU has AVX2, lanes go two at a
    // time (`romix_x2`), in the memory of one. With AVX-512VL as well, the same code is
    // compiled a second time: the compiler turns the block mix's shift-shift-or rotations
    // into single `vprold` instructions.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        cpufeatures::new!(avx512vl, "avx2", "avx512f", "avx512vl");
        cpufeatures::new!(avx2, "avx2");
        if avx512vl::get() {
            // SAFETY: the CPU has these features, as just detected.
            unsafe { romix_sequential_avx512(nr128, r128, n, b) };
            return;
        }
        if avx2::get() {
            // SAFETY: as above.
            unsafe { romix_sequential_avx2(nr128, r128, n, b) };
            return;
        }
    }
    romix_sequential_inline(nr128, r128, n, b);
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "avx2,avx512f,avx512vl")]
#[cfg(not(feature = "parallel"))]
unsafe fn romix_sequential_avx512(nr128: usize, r128: usize, n: usize, b: &mut [u8]) {
    // SAFETY: the caller checked for the features.
    unsafe { romix_pairs_inline(nr128, r128, n, b) };
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "avx2")]
#[cfg(not(feature = "parallel"))]
unsafe fn romix_sequential_avx2(nr128: usize, r128: usize, n: usize, b: &mut [u8]) {
    // SAFETY: the caller checked for the feature.
    unsafe { romix_pairs_inline(nr128, r128, n, b) };
}

/// Lanes two at a time, and a last odd one alone in the same memory.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(all(target_arch = "x86_64", not(feature = "parallel")))]
#[inline(always)]
unsafe fn romix_pairs_inline(nr128: usize, r128: usize, n: usize, b: &mut [u8]) {
    if n < 2 {
        romix_sequential_inline(nr128, r128, n, b);
        return;
    }
    let mut v = table::Table::zeroed(nr128);
    let mut t = vec![0u8; 4 * r128];
    let mut lanes = b.chunks_exact_mut(r128);
    // A `while` loop, not iterator adaptors: their closures would be compiled apart,
    // without the caller's target features.
    while let Some(xa) = lanes.next() {
        match lanes.next() {
            // SAFETY: the caller's CPU has AVX2.
            Some(xb) => unsafe { romix_x2::ro_mix_x2(xa, xb, &mut v, &mut t, n) },
            None => romix::scrypt_ro_mix(xa, &mut v, &mut t[..r128], n),
        }
    }
}

#[cfg(not(feature = "parallel"))]
#[inline(always)]
fn romix_sequential_inline(nr128: usize, r128: usize, n: usize, b: &mut [u8]) {
    let mut v = table::Table::zeroed(nr128);
    let mut t = vec![0u8; r128];

    // A `for` loop, not `for_each`: the closure's `fold` would be compiled apart, without
    // the caller's target features.
    for chunk in b.chunks_mut(r128) {
        romix::scrypt_ro_mix(chunk, &mut v, &mut t, n);
    }
}

#[cfg(feature = "parallel")]
fn romix_parallel(nr128: usize, r128: usize, n: usize, b: &mut [u8]) {
    use rayon::{iter::ParallelIterator as _, slice::ParallelSliceMut as _};

    b.par_chunks_mut(r128).for_each(|chunk| {
        let mut v = vec![0u8; nr128];
        let mut t = vec![0u8; r128];
        romix::scrypt_ro_mix(chunk, &mut v, &mut t, n);
    });
}

/// scrypt password hashing type which can produce and verify strings in either the Password Hashing
/// Competition (PHC) string format which begin with `$scrypt$`, or in Modular Crypt Format (MCF)
/// which begin with `$7$`.
///
/// This type holds the default parameters to use when computing password hashes.
///
/// See the toplevel documentation for a code example.
#[cfg(any(feature = "kdf", feature = "mcf", feature = "phc"))]
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct Scrypt {
    /// Default parameters to use.
    params: Params,
}

#[cfg(any(feature = "kdf", feature = "mcf", feature = "phc"))]
impl Scrypt {
    /// Initialize [`Scrypt`] with default parameters.
    #[must_use]
    pub const fn new() -> Self {
        Self { params: Params::RECOMMENDED }
    }

    /// Initialize [`Scrypt`] with the provided parameters.
    #[must_use]
    pub const fn new_with_params(params: Params) -> Self {
        Self { params }
    }
}

#[cfg(any(feature = "kdf", feature = "mcf", feature = "phc"))]
impl From<Params> for Scrypt {
    fn from(params: Params) -> Self {
        Self::new_with_params(params)
    }
}

#[cfg(feature = "kdf")]
impl Kdf for Scrypt {
    fn derive_key(&self, password: &[u8], salt: &[u8], out: &mut [u8]) -> kdf::Result<()> {
        scrypt(password, salt, &self.params, out)?;
        Ok(())
    }
}

#[cfg(feature = "kdf")]
impl Pbkdf for Scrypt {}

#[cfg(all(test, target_arch = "x86_64", not(feature = "parallel")))]
mod pair_tests {
    extern crate std;
    use alloc::vec::Vec;

    /// Lanes two at a time (half tables) give what one at a time (whole tables) gives.
    #[test]
    fn pairs_match_single_lanes() {
        if !std::is_x86_feature_detected!("avx2") {
            return;
        }
        let mut seed = 0x9e37_79b9_u32;
        // The last, 4 MiB a lane, goes through a mapped table (`table.rs`).
        for &(log_n, r, p) in &[(1u32, 1usize, 2usize), (4, 1, 3), (6, 2, 4), (10, 8, 5), (8, 3, 6), (12, 8, 3)] {
            let (n, r128) = (1usize << log_n, r * 128);
            let b: Vec<u8> = (0..p * r128)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            let (mut one, mut two) = (b.clone(), b);
            super::romix_sequential_inline(n * r128, r128, n, &mut one);
            // SAFETY: AVX2 was detected above.
            unsafe { super::romix_pairs_inline(n * r128, r128, n, &mut two) };
            assert!(one == two, "N={n} r={r} p={p}");
        }
    }
}
