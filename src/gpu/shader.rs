//! What the host knows of its WGSL, declared once in Rust: each shader's source parts and the
//! constants it is compiled with, and each kernel's entry point, `Params` uniform, storage
//! bindings and override constants. `tests/shader_contract.rs` checks every declaration
//! against the WGSL itself (with naga's reflection), so the two sides cannot drift apart.

use std::fmt::Write as _;
use std::marker::PhantomData;

use bytemuck::Pod;

/// Helpers that every shader is compiled with: the workgroup size and the flat invocation
/// index of a dispatch split over two dimensions (see [`super::Recorder::dispatch`]).
const PRELUDE: &str = include_str!("../../shaders/common.wgsl");

/// The prelude's file name, for the test that every shader file is used.
pub const PRELUDE_FILE: &str = "common";

/// The files that define `workgroup_sum`, one per [`Reduction`], for the same test.
pub const REDUCTION_FILES: [&str; 2] = ["reduce_tree", "reduce_subgroup"];

/// One file of shaders/: a part of one or more shaders.
#[derive(Debug)]
pub struct ShaderPart {
    pub file: &'static str,
    pub text: &'static str,
}

/// A [`ShaderPart`] from shaders/`$file`.wgsl.
#[macro_export]
#[doc(hidden)]
macro_rules! shader_part {
    ($file:literal) => {
        $crate::gpu::ShaderPart {
            file: $file,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $file, ".wgsl")),
        }
    };
}

/// One shader module: WGSL has no includes, so a shader is a list of parts compiled as one
/// text after the constants that Rust defines for it and the prelude.
#[derive(Debug)]
pub struct Shader {
    pub name: &'static str,
    /// Every index its kernels compute is within sizes the host checks before it dispatches
    /// (each wrapper's buffer-length checks, the bounded geometry): it may run without
    /// wgpu's runtime checks ([`ShaderChecks`]).
    pub trusted: bool,
    /// Its kernels sum across a workgroup with `workgroup_sum` (and take a `Lanes` argument):
    /// the source gains the part that defines them for the device's [`Reduction`].
    pub workgroup_sum: bool,
    /// `const NAME: u32` declarations generated from the Rust values they must equal.
    pub constants: &'static [(&'static str, u32)],
    pub parts: &'static [ShaderPart],
}

/// How `workgroup_sum` adds a value over a workgroup's invocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// A tree in workgroup memory (shaders/reduce_tree.wgsl): every adapter.
    Tree,
    /// Subgroup sums, then one per subgroup (shaders/reduce_subgroup.wgsl): adapters with
    /// `Features::SUBGROUP`.
    Subgroups,
}

impl Reduction {
    pub const ALL: [Self; 2] = [Self::Tree, Self::Subgroups];

    fn part(self) -> ShaderPart {
        match self {
            Self::Tree => crate::shader_part!("reduce_tree"),
            Self::Subgroups => crate::shader_part!("reduce_subgroup"),
        }
    }
}

impl std::fmt::Display for Reduction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tree => "workgroup tree",
            Self::Subgroups => "subgroups",
        })
    }
}

impl Shader {
    /// The text that is compiled: the generated constants, the prelude, `workgroup_sum` for
    /// `reduction` where the shader uses it, then the parts.
    pub fn source(&self, reduction: Reduction) -> String {
        let mut source = String::from("// Constants generated from Rust (src/kernels).\n");
        for (name, value) in self.constants {
            let _ = writeln!(source, "const {name}: u32 = {value}u;");
        }
        source.push_str(PRELUDE);
        let reduce = self.workgroup_sum.then(|| reduction.part());
        for part in reduce.iter().chain(self.parts) {
            let _ = write!(source, "\n// ---- shaders/{}.wgsl ----\n{}", part.file, part.text);
        }
        source
    }
}

/// Which shaders run with wgpu's runtime checks (bounds checks on buffers and local arrays
/// where the driver does not make accesses safe itself, and bounded loops).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShaderChecks {
    /// Every shader keeps them.
    All,
    /// Shaders declared [`Shader::trusted`] run without them.
    #[default]
    Declared,
    /// No shader keeps them: only for measuring what they cost.
    None,
}

impl ShaderChecks {
    /// Whether `shader` is compiled with the checks.
    pub fn checked(self, shader: &Shader) -> bool {
        match self {
            Self::All => true,
            Self::Declared => !shader.trusted,
            Self::None => false,
        }
    }
}

impl std::str::FromStr for ShaderChecks {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "all" => Ok(Self::All),
            "declared" => Ok(Self::Declared),
            "none" => Ok(Self::None),
            _ => Err(format!("{s:?}: expected all, declared or none")),
        }
    }
}

/// A `Params` uniform as Rust lays it out: its size and each member's name and byte offset.
#[derive(Clone, Copy, Debug)]
pub struct ParamsLayout {
    pub name: &'static str,
    pub size: usize,
    pub members: &'static [(&'static str, usize)],
}

/// A kernel's uniform parameters: plain data whose layout the shader's `Params` mirrors.
/// Declare one with [`uniform_params!`](crate::uniform_params).
pub trait UniformParams: Pod {
    const LAYOUT: ParamsLayout;
}

/// Declares a `#[repr(C)]` parameter struct and its [`UniformParams`] layout. Members whose
/// names start with `_` are padding, which the WGSL side may name as it likes.
#[macro_export]
#[doc(hidden)]
macro_rules! uniform_params {
    ($(#[$meta:meta])* $vis:vis struct $name:ident {
        $($(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty),* $(,)?
    }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name { $($(#[$field_meta])* $field_vis $field: $ty),* }

        impl $crate::gpu::UniformParams for $name {
            const LAYOUT: $crate::gpu::ParamsLayout = $crate::gpu::ParamsLayout {
                name: stringify!($name),
                size: std::mem::size_of::<$name>(),
                members: &[$((stringify!($field), std::mem::offset_of!($name, $field))),*],
            };
        }
    };
}

/// How a kernel uses one of its storage buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// Everything the host must know to run one entry point: binding 0 is its `Params` uniform,
/// bindings 1.. its storage buffers in order, and its override constants (besides WG) get
/// their values at each dispatch in the order named here.
#[derive(Debug)]
pub struct KernelInfo {
    pub shader: &'static Shader,
    pub entry: &'static str,
    pub params: ParamsLayout,
    pub storage: &'static [Access],
    pub overrides: &'static [&'static str],
}

impl KernelInfo {
    pub fn name(&self) -> String {
        format!("{}::{}", self.shader.name, self.entry)
    }
}

/// A kernel whose uniform parameters are a `P`: dispatching it with any other type does not
/// compile.
pub struct Kernel<P> {
    info: KernelInfo,
    _params: PhantomData<fn(P)>,
}

impl<P: UniformParams> Kernel<P> {
    pub const fn new(
        shader: &'static Shader,
        entry: &'static str,
        storage: &'static [Access],
        overrides: &'static [&'static str],
    ) -> Self {
        Self {
            info: KernelInfo { shader, entry, params: P::LAYOUT, storage, overrides },
            _params: PhantomData,
        }
    }
}

impl<P> Kernel<P> {
    pub const fn info(&self) -> &KernelInfo {
        &self.info
    }

    pub fn name(&self) -> String {
        self.info.name()
    }
}

/// Declares a module's kernels as statics and the list of them for the registry:
///
/// ```text
/// kernels! { KERNELS = [
///     /// y = max(x, 0).
///     FORWARD: Params = SHADER::relu_forward(Read, ReadWrite);
///     CONV: Params = SHADER::forward(Read, ReadWrite) [CHUNK, UNIT_STRIDE];
/// ] }
/// ```
///
/// Each entry names the WGSL entry point, the access of each storage binding in order, and
/// the override constants whose values each dispatch gives, in order.
#[macro_export]
#[doc(hidden)]
macro_rules! kernels {
    ($list:ident = [$(
        $(#[$meta:meta])*
        $name:ident : $params:ty = $shader:ident :: $entry:ident ($($access:ident),* $(,)?) $([$($override:ident),* $(,)?])?;
    )*]) => {
        $(
            $(#[$meta])*
            static $name: $crate::gpu::Kernel<$params> = $crate::gpu::Kernel::new(
                &$shader,
                stringify!($entry),
                &[$($crate::gpu::Access::$access),*],
                &[$($(stringify!($override)),*)?],
            );
        )*
        /// This module's kernels, for the registry (`kernels::registry`).
        pub(crate) static $list: &[&$crate::gpu::KernelInfo] = &[$($name.info()),*];
    };
}
