//! Helper macros shared by the wire modules.

/// Declares a `#[repr(u32)]` enum of wire numbers with `from_u32`,
/// `value`, `ALL` and `TryFrom<u32>`.
macro_rules! u32_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:expr,)* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The wire value.
            pub const fn value(self) -> u32 {
                self as u32
            }

            /// The value for a wire number, if it is one.
            pub const fn from_u32(value: u32) -> Option<Self> {
                match value {
                    $($value => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl TryFrom<u32> for $name {
            type Error = u32;
            fn try_from(value: u32) -> Result<Self, u32> {
                Self::from_u32(value).ok_or(value)
            }
        }
    };
}
pub(crate) use u32_enum;

/// Declares a `#[repr(C)]` wire struct of alignment-1 little-endian fields
/// with the zerocopy derives and an all-zero `Default`.
macro_rules! wire_struct {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            ::zerocopy::FromBytes,
            ::zerocopy::IntoBytes,
            ::zerocopy::Immutable,
            ::zerocopy::KnownLayout,
            ::zerocopy::Unaligned,
        )]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl Default for $name {
            fn default() -> Self {
                <Self as ::zerocopy::FromZeros>::new_zeroed()
            }
        }
    };
}
pub(crate) use wire_struct;
