use serde::{Deserialize, Serialize};
use std::fmt;

/// One row of METHOD.md §2 Table 1. The snake_case names are the config keys everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DynamicsKind {
    Gd,
    Sgd,
    GldConst,
    GldDynamic,
    GldDiag,
    GldLeading,
    GldHessian,
    GldEig1,
}

impl DynamicsKind {
    pub const ALL: [DynamicsKind; 8] = [
        DynamicsKind::Gd,
        DynamicsKind::Sgd,
        DynamicsKind::GldConst,
        DynamicsKind::GldDynamic,
        DynamicsKind::GldDiag,
        DynamicsKind::GldLeading,
        DynamicsKind::GldHessian,
        DynamicsKind::GldEig1,
    ];

    /// The six Langevin variants: Gaussian noise of some shape added to a GD step.
    pub fn langevin() -> &'static [DynamicsKind] {
        &Self::ALL[2..]
    }

    /// Position in [`Self::ALL`]; also the RNG stream offset of the dynamics.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The config key.
    pub fn key(self) -> &'static str {
        match self {
            DynamicsKind::Gd => "gd",
            DynamicsKind::Sgd => "sgd",
            DynamicsKind::GldConst => "gld_const",
            DynamicsKind::GldDynamic => "gld_dynamic",
            DynamicsKind::GldDiag => "gld_diag",
            DynamicsKind::GldLeading => "gld_leading",
            DynamicsKind::GldHessian => "gld_hessian",
            DynamicsKind::GldEig1 => "gld_eig1",
        }
    }

    /// The paper's name, for tables and plots.
    pub fn label(self) -> &'static str {
        match self {
            DynamicsKind::Gd => "GD",
            DynamicsKind::Sgd => "SGD",
            DynamicsKind::GldConst => "GLD const",
            DynamicsKind::GldDynamic => "GLD dynamic",
            DynamicsKind::GldDiag => "GLD diag",
            DynamicsKind::GldLeading => "GLD leading",
            DynamicsKind::GldHessian => "GLD Hessian",
            DynamicsKind::GldEig1 => "GLD 1st eigvec(H)",
        }
    }

    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.key() == key)
    }
}

impl fmt::Display for DynamicsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}
