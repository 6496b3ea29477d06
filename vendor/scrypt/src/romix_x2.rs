//! sluice's addition (see vendor/README.md): two lanes of `ROMix` computed together.
//!
//! The SSE2 block mix is one long chain of dependent operations: a core waits on each
//! result far more than it computes. Two independent lanes side by side in the halves of
//! 256-bit AVX2 registers take about the time of one. Kept whole, two lanes' tables would
//! double the memory (2 × 128·r·N bytes); so each lane keeps only its even-numbered
//! entries, and an odd-numbered one is made again from the entry before it when it is
//! asked for (one block mix more for three in four steps of the second loop). Same
//! memory as one lane in full, same result bit for bit.

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

use crate::romix::{integerify, xor};

/// `BlockMix` of lane A (`ia` into `oa`) and lane B (`ib` into `ob`) at once. All four
/// hold blocks in the shuffled order of `block_mix::shuffle_in`, as the SSE2 block mix
/// does: the low half of every register is lane A, the high half lane B, and
/// `_mm256_shuffle_epi32` shuffles each half on its own.
#[inline(always)]
#[allow(clippy::many_single_char_names)]
unsafe fn block_mix_x2(ia: &[u8], ib: &[u8], oa: &mut [u8], ob: &mut [u8]) {
    // SAFETY: the caller's CPU has AVX2, and every load and store stays inside its slice:
    // offsets below `len`, checked for all four.
    unsafe {
        macro_rules! rol {
            ($w:expr, $amt:literal) => {{
                let w = $w;
                _mm256_or_si256(_mm256_slli_epi32(w, $amt), _mm256_srli_epi32(w, 32 - $amt))
            }};
        }
        let len = ia.len();
        assert!(ib.len() == len && oa.len() == len && ob.len() == len && len % 128 == 0);
        macro_rules! load {
            ($a:expr, $b:expr, $at:expr) => {
                _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128($a.as_ptr().add($at).cast())),
                    _mm_loadu_si128($b.as_ptr().add($at).cast()),
                    1,
                )
            };
        }
        macro_rules! store {
            ($at:expr, $v:expr) => {{
                let v = $v;
                _mm_storeu_si128(oa.as_mut_ptr().add($at).cast(), _mm256_castsi256_si128(v));
                _mm_storeu_si128(ob.as_mut_ptr().add($at).cast(), _mm256_extracti128_si256(v, 1));
            }};
        }
        let last = len - 64;
        let mut a = load!(ia, ib, last);
        let mut b = load!(ia, ib, last + 16);
        let mut c = load!(ia, ib, last + 32);
        let mut d = load!(ia, ib, last + 48);
        for i in 0..len / 64 {
            let at = i * 64;
            let pos = if i % 2 == 0 { (i / 2) * 64 } else { (i / 2) * 64 + len / 2 };
            a = _mm256_xor_si256(a, load!(ia, ib, at));
            b = _mm256_xor_si256(b, load!(ia, ib, at + 16));
            c = _mm256_xor_si256(c, load!(ia, ib, at + 32));
            d = _mm256_xor_si256(d, load!(ia, ib, at + 48));
            let saves = [a, b, c, d];
            for _ in 0..8 {
                b = _mm256_xor_si256(b, rol!(_mm256_add_epi32(a, d), 7));
                c = _mm256_xor_si256(c, rol!(_mm256_add_epi32(b, a), 9));
                d = _mm256_xor_si256(d, rol!(_mm256_add_epi32(c, b), 13));
                a = _mm256_xor_si256(a, rol!(_mm256_add_epi32(d, c), 18));
                d = _mm256_shuffle_epi32(d, 0b00_11_10_01);
                c = _mm256_shuffle_epi32(c, 0b01_00_11_10);
                b = _mm256_shuffle_epi32(b, 0b10_01_00_11);
                (b, d) = (d, b);
            }
            a = _mm256_add_epi32(a, saves[0]);
            b = _mm256_add_epi32(b, saves[1]);
            c = _mm256_add_epi32(c, saves[2]);
            d = _mm256_add_epi32(d, saves[3]);
            store!(pos, a);
            store!(pos + 16, b);
            store!(pos + 32, c);
            store!(pos + 48, d);
        }
    }
}

/// `ROMix` of two lanes, `xa` and `xb` (128·r bytes each), in place. `v` must hold
/// 128·r·N bytes: half a table for each lane. `t` must hold 4 × 128·r bytes.
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
pub(crate) unsafe fn ro_mix_x2(xa: &mut [u8], xb: &mut [u8], v: &mut [u8], t: &mut [u8], n: usize) {
    let len = xa.len();
    assert!(n >= 2 && n % 2 == 0 && xb.len() == len && v.len() >= n * len && t.len() >= 4 * len);
    crate::block_mix::shuffle_in(xa);
    crate::block_mix::shuffle_in(xb);
    let (va, vb) = v[..n * len].split_at_mut(n / 2 * len);
    let (ta, rest) = t.split_at_mut(len);
    let (tb, rest) = rest.split_at_mut(len);
    let (wa, rest) = rest.split_at_mut(len);
    let wb = &mut rest[..len];

    // V_i for even i is kept; V_{i+1} = BlockMix(V_i) is only passed through.
    for k in 0..n / 2 {
        let (sa, sb) = (&mut va[k * len..(k + 1) * len], &mut vb[k * len..(k + 1) * len]);
        sa.copy_from_slice(xa);
        sb.copy_from_slice(xb);
        // SAFETY: the caller's CPU has AVX2.
        unsafe {
            block_mix_x2(sa, sb, ta, tb);
            block_mix_x2(ta, tb, xa, xb);
        }
    }

    for _ in 0..n {
        let (ja, jb) = (integerify(xa, n), integerify(xb, n));
        let (ka, kb) = (ja / 2 * len, jb / 2 * len);
        let (ea, eb) = (&va[ka..ka + len], &vb[kb..kb + len]);
        if ja % 2 == 1 || jb % 2 == 1 {
            // SAFETY: as above.
            unsafe { block_mix_x2(ea, eb, wa, wb) };
        }
        xor(xa, if ja % 2 == 1 { wa } else { ea }, ta);
        xor(xb, if jb % 2 == 1 { wb } else { eb }, tb);
        // SAFETY: as above.
        unsafe { block_mix_x2(ta, tb, xa, xb) };
    }

    crate::block_mix::shuffle_out(xa);
    crate::block_mix::shuffle_out(xb);
}
