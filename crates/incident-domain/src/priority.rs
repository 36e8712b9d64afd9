//! Impact, urgency and the matrix that turns them into a priority P1..P5.
//!
//! The default matrix: high/high P1; high/medium and medium/high P2; high/low, medium/medium and
//! low/high P3; medium/low and low/medium P4; low/low P5. Any cell can be overridden from TOML:
//!
//! ```toml
//! [priority_matrix]
//! high = { low = "P2" }          # impact high, urgency low -> P2 instead of P3
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use thiserror::Error;

macro_rules! level_enum {
    ($name:ident, $what:literal) => {
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            High,
            Medium,
            Low,
        }

        impl $name {
            pub const ALL: [$name; 3] = [$name::High, $name::Medium, $name::Low];

            pub fn as_str(self) -> &'static str {
                match self {
                    $name::High => "high",
                    $name::Medium => "medium",
                    $name::Low => "low",
                }
            }

            /// Parses `high`, `medium` or `low` (any case).
            pub fn parse(s: &str) -> Result<Self, crate::DomainError> {
                match s.to_ascii_lowercase().as_str() {
                    "high" => Ok($name::High),
                    "medium" => Ok($name::Medium),
                    "low" => Ok($name::Low),
                    _ => Err(crate::DomainError::invalid(
                        $what,
                        format!("{s:?} is not one of high, medium, low"),
                    )),
                }
            }

            fn index(self) -> usize {
                match self {
                    $name::High => 0,
                    $name::Medium => 1,
                    $name::Low => 2,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

level_enum!(Impact, "impact");
level_enum!(Urgency, "urgency");

/// P1 is the most urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    P1,
    P2,
    P3,
    P4,
    P5,
}

impl Priority {
    pub const ALL: [Priority; 5] = [
        Priority::P1,
        Priority::P2,
        Priority::P3,
        Priority::P4,
        Priority::P5,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
            Priority::P4 => "P4",
            Priority::P5 => "P5",
        }
    }

    /// Parses `P1`..`P5` (any case).
    pub fn parse(s: &str) -> Result<Self, crate::DomainError> {
        match s.to_ascii_uppercase().as_str() {
            "P1" => Ok(Priority::P1),
            "P2" => Ok(Priority::P2),
            "P3" => Ok(Priority::P3),
            "P4" => Ok(Priority::P4),
            "P5" => Ok(Priority::P5),
            _ => Err(crate::DomainError::invalid(
                "priority",
                format!("{s:?} is not one of P1, P2, P3, P4, P5"),
            )),
        }
    }
}

impl std::str::FromStr for Priority {
    type Err = crate::DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::parse(s)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Impact x urgency -> priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorityMatrix {
    cells: [[Priority; 3]; 3],
}

impl Default for PriorityMatrix {
    fn default() -> Self {
        use Priority::*;
        Self {
            cells: [[P1, P2, P3], [P2, P3, P4], [P3, P4, P5]],
        }
    }
}

#[derive(Debug, Error)]
pub enum MatrixError {
    #[error("priority matrix: {0}")]
    Toml(String),
    #[error("priority matrix: {cell}: {reason}")]
    Cell { cell: String, reason: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixFile {
    #[serde(default)]
    priority_matrix: BTreeMap<String, BTreeMap<String, String>>,
}

impl PriorityMatrix {
    pub fn priority(&self, impact: Impact, urgency: Urgency) -> Priority {
        self.cells[impact.index()][urgency.index()]
    }

    pub fn set(&mut self, impact: Impact, urgency: Urgency, priority: Priority) {
        self.cells[impact.index()][urgency.index()] = priority;
    }

    /// The default matrix with the cells a TOML document's `[priority_matrix]` table overrides.
    pub fn from_toml(text: &str) -> Result<Self, MatrixError> {
        let file: MatrixFile =
            toml::from_str(text).map_err(|e| MatrixError::Toml(e.to_string()))?;
        let mut matrix = Self::default();
        for (impact, row) in file.priority_matrix {
            let i = Impact::parse(&impact).map_err(|e| MatrixError::Cell {
                cell: impact.clone(),
                reason: e.to_string(),
            })?;
            for (urgency, priority) in row {
                let cell = format!("{impact}.{urgency}");
                let u = Urgency::parse(&urgency).map_err(|e| MatrixError::Cell {
                    cell: cell.clone(),
                    reason: e.to_string(),
                })?;
                let p = Priority::parse(&priority).map_err(|e| MatrixError::Cell {
                    cell: cell.clone(),
                    reason: e.to_string(),
                })?;
                matrix.set(i, u, p);
            }
        }
        Ok(matrix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Impact as I;
    use Priority::*;
    use Urgency as U;

    #[test]
    fn default_matrix_is_the_agreed_one() {
        let m = PriorityMatrix::default();
        let expect = [
            (I::High, U::High, P1),
            (I::High, U::Medium, P2),
            (I::Medium, U::High, P2),
            (I::High, U::Low, P3),
            (I::Medium, U::Medium, P3),
            (I::Low, U::High, P3),
            (I::Medium, U::Low, P4),
            (I::Low, U::Medium, P4),
            (I::Low, U::Low, P5),
        ];
        for (i, u, p) in expect {
            assert_eq!(m.priority(i, u), p, "{i}/{u}");
        }
    }

    #[test]
    fn toml_overrides_only_the_cells_it_names() {
        let m = PriorityMatrix::from_toml("[priority_matrix]\nhigh = { low = \"P2\" }\n").unwrap();
        assert_eq!(m.priority(I::High, U::Low), P2);
        assert_eq!(m.priority(I::High, U::High), P1);
        assert_eq!(m.priority(I::Low, U::Low), P5);
    }

    #[test]
    fn toml_errors_name_the_cell() {
        let err = PriorityMatrix::from_toml("[priority_matrix]\nhigh = { low = \"P9\" }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("high.low"), "{err}");
        let err = PriorityMatrix::from_toml("[priority_matrix]\nhuge = { low = \"P1\" }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("huge"), "{err}");
        assert!(PriorityMatrix::from_toml("[prio]\n").is_err());
    }
}
