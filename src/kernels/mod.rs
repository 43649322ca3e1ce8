//! Hand-written CPU kernels for the image classifiers' hot loops: strided matrix
//! products on the `gemm` crate (the one candle uses), im2col / col2im in NHWC layout
//! and 2×2 max pooling with PyTorch's first-maximum rule. Generic over f32 and f64.
//!
//! Everything here is single-threaded on purpose: callers split samples across threads,
//! so no thread pool ever waits on another (no oversubscription).

/// Whether the AVX2 + FMA versions can run here.
#[inline]
pub(crate) fn fma_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the AVX-512 kernels can run here (`NOISELAB_AVX512=0` keeps them off, to
/// compare with the AVX2 ones).
pub(crate) fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f")
                && fma_available()
                && std::env::var("NOISELAB_AVX512").map_or(true, |v| v != "0")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
thread_local! {
    /// The widest vectors (f32 lanes) a test lets the kernels use (each test is one
    /// thread): 16, 8, or 0 for the plain loops.
    pub(crate) static WIDEST: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// The widest vectors (f32 lanes) to use: all the CPU has, except in a test that caps
/// them.
pub(crate) fn widest() -> usize {
    #[cfg(test)]
    return WIDEST.with(std::cell::Cell::get);
    #[cfg(not(test))]
    usize::MAX
}

/// Calls `$imp::<T, true>` compiled for AVX2 + FMA when the CPU has them, else the
/// baseline `$imp::<T, false>` (the build targets baseline x86-64). Defined before the
/// kernel modules, which use it.
macro_rules! dispatch {
    ($imp:ident, $fast:ident, ($($arg:ident: $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $fast<T: Float>($($arg: $ty),*) {
            $imp::<T, true>($($arg),*)
        }
        if $crate::kernels::fma_available() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { $fast::<T>($($arg),*) };
        }
        $imp::<T, false>($($arg),*)
    };
}

/// `x` as f32 values when T is f32.
#[inline(always)]
pub(crate) fn as_f32<T: Float>(x: &[T]) -> Option<&[f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32 (same type, same layout).
        .then(|| unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len()) })
}

#[inline(always)]
pub(crate) fn as_f32_mut<T: Float>(x: &mut [T]) -> Option<&mut [f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32 (same type, same layout); the borrow is moved into the result.
        .then(|| unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<f32>(), x.len()) })
}

/// Keeps freed buffers of up to 32 MB in the heap instead of returning them to the
/// system (glibc). Every pass allocates and frees buffers of a few MB per chunk; with
/// glibc's adaptive threshold each of them could be a fresh mapping, faulted in page by
/// page (an HVP on LeNet spent 10 of its 80 ms so). 32 MB is the most glibc's own
/// adaptation would reach; fixed from the start, it never unmaps them. Called by every
/// kernel model (`NativeClassifier::new`); process-wide and idempotent.
pub(crate) fn keep_buffers_in_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only sets allocator parameters; both values are in range.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
            }
        });
    }
}

pub mod broadcast;
pub mod conv;
pub mod direct;
pub mod pool;
pub mod pooled;

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

/// The floating-point types the kernels run in.
pub trait Float:
    Copy
    + Send
    + Sync
    + Debug
    + Default
    + PartialOrd
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn is_nan(self) -> bool;
    /// self·a + b, rounded once (an FMA instruction where the CPU has one enabled).
    fn mul_add(self, a: Self, b: Self) -> Self;
}

macro_rules! float {
    ($t:ty) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
        }
    };
}
float!(f32);
float!(f64);

/// A read-only strided matrix view: entry (i, j) is `data[i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major `rows × cols` matrix.
    pub fn rows(data: &'a [T], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    pub fn t(self) -> Self {
        Mat {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < self.data.len(), "matrix view out of bounds");
        }
    }
}

/// out (row-major `a.rows × b.cols`) = a·b, or out += a·b when `accumulate`.
pub fn matmul<T: Float>(out: &mut [T], accumulate: bool, a: Mat<'_, T>, b: Mat<'_, T>) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    assert!(out.len() >= a.rows * b.cols, "output too small");
    a.check();
    b.check();
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out[..m * n].fill(T::ZERO);
        }
        return;
    }
    // SAFETY: the views were bounds-checked above for their full extent, `out` holds
    // m·n row-major entries, and the three slices do not alias (`out` is `&mut`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
