//! What every header view shares: the buffer wrapper with its constructors, and
//! fixed-position fields read and written in network byte order.
//!
//! Each protocol declares its view with [`view!`], listing its fixed fields by byte
//! range; it writes by hand only what differs: its `check_len` (what makes a buffer
//! valid is the protocol's own rule) and the accessors that are more than one field
//! (lengths counted in words, flag bits, payload bounds).

use mfplane_core::csum;

/// A fixed-size header field as it sits on the wire (big-endian for integers).
///
/// `read` and `write` take exactly the field's bytes: the `field` ranges of a view
/// whose length was checked, so neither can panic on a checked view.
pub(crate) trait Field: Sized {
    fn read(bytes: &[u8]) -> Self;
    fn write(self, bytes: &mut [u8]);
}

impl Field for u8 {
    #[inline(always)]
    fn read(bytes: &[u8]) -> Self {
        bytes[0]
    }
    #[inline(always)]
    fn write(self, bytes: &mut [u8]) {
        bytes[0] = self;
    }
}

impl Field for u16 {
    #[inline(always)]
    fn read(bytes: &[u8]) -> Self {
        u16::from_be_bytes([bytes[0], bytes[1]])
    }
    #[inline(always)]
    fn write(self, bytes: &mut [u8]) {
        bytes.copy_from_slice(&self.to_be_bytes());
    }
}

impl Field for u32 {
    #[inline(always)]
    fn read(bytes: &[u8]) -> Self {
        u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }
    #[inline(always)]
    fn write(self, bytes: &mut [u8]) {
        bytes.copy_from_slice(&self.to_be_bytes());
    }
}

/// Opaque bytes: hardware addresses, the type-specific word of ICMP.
impl<const N: usize> Field for [u8; N] {
    #[inline(always)]
    fn read(bytes: &[u8]) -> Self {
        let mut a = [0; N];
        a.copy_from_slice(bytes);
        a
    }
    #[inline(always)]
    fn write(self, bytes: &mut [u8]) {
        bytes.copy_from_slice(&self);
    }
}

/// The folded sum of the IPv4 pseudo-header and a TCP or UDP `segment` (header and
/// payload, checksum field included): `0xffff` when a received checksum verifies,
/// and with the field zeroed, its complement is the checksum to send.
pub(crate) fn pseudo_header_sum(src: u32, dst: u32, proto: u8, segment: &[u8]) -> u16 {
    let ph = csum::pseudo_header_sum(src, dst, proto, segment.len() as u16);
    csum::fold(csum::sum_bytes(ph, segment))
}

/// Test data: a TCP or UDP `segment` with the checksum at `at` filled in, computed
/// straight from `mfplane_core::csum` rather than through the views under test.
#[cfg(test)]
pub(crate) fn with_checksum(
    segment: &[u8],
    src: u32,
    dst: u32,
    proto: u8,
    at: core::ops::Range<usize>,
) -> Vec<u8> {
    let mut b = segment.to_vec();
    let ph = csum::pseudo_header_sum(src, dst, proto, b.len() as u16);
    let c = !csum::fold(csum::sum_bytes(ph, &b));
    b[at].copy_from_slice(&c.to_be_bytes());
    b
}

/// Declares a view `$name<T: AsRef<[u8]>>` over a buffer: the constructors every view
/// has (`new_unchecked`, `new_checked`, `into_inner`), then for each listed field a
/// getter on `AsRef<[u8]>` and a setter on `AsMut<[u8]>`, reading and writing the
/// field's byte range as a [`Field`]. The invoking module supplies `check_len(&self)
/// -> Result<()>`, which `new_checked` calls.
macro_rules! view {
    (
        $(#[$attr:meta])*
        pub struct $name:ident;
        fields {
            $( $(#[$field_attr:meta])* $get:ident, $set:ident: $ty:ty = $range:expr; )*
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Wraps `buffer` without checking it: for buffers the caller has sized
            /// itself (emitting). Untrusted input goes through
            /// [`new_checked`](Self::new_checked).
            pub const fn new_unchecked(buffer: T) -> Self {
                $name { buffer }
            }

            /// [`new_unchecked`](Self::new_unchecked) followed by
            /// [`check_len`](Self::check_len).
            pub fn new_checked(buffer: T) -> Result<Self> {
                let view = Self::new_unchecked(buffer);
                view.check_len()?;
                Ok(view)
            }

            /// The wrapped buffer.
            pub fn into_inner(self) -> T {
                self.buffer
            }

            $(
                $(#[$field_attr])*
                #[inline]
                pub fn $get(&self) -> $ty {
                    <$ty as $crate::wire::view::Field>::read(&self.buffer.as_ref()[$range])
                }
            )*
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            $(
                #[doc = concat!("Sets [`", stringify!($get), "`](Self::", stringify!($get), ").")]
                #[inline]
                pub fn $set(&mut self, value: $ty) {
                    $crate::wire::view::Field::write(value, &mut self.buffer.as_mut()[$range]);
                }
            )*
        }
    };
}
pub(crate) use view;
