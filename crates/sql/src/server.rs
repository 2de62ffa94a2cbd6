//! Which server answers: its flavor and numeric version.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Server flavor: decides the SQL dialect and the tools used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// MariaDB (10.x, 11.x).
    MariaDB,
    /// Oracle MySQL (5.7, 8.x, 9.x).
    MySQL,
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::MariaDB => "mariadb",
            Flavor::MySQL => "mysql",
        })
    }
}

impl std::str::FromStr for Flavor {
    type Err = String;
    fn from_str(s: &str) -> Result<Flavor, String> {
        match s.to_ascii_lowercase().as_str() {
            "mariadb" => Ok(Flavor::MariaDB),
            "mysql" => Ok(Flavor::MySQL),
            other => Err(format!("unknown server flavor '{other}' (mariadb or mysql)")),
        }
    }
}

/// A numeric server version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// `10.11.18-MariaDB...` → 10.11.18; a missing patch reads as 0.
    pub fn parse(s: &str) -> Option<Version> {
        let mut it = s.split(|c: char| !c.is_ascii_digit());
        let a = it.next()?.parse().ok()?;
        let b = it.next()?.parse().ok()?;
        let c = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        Some(Version(a, b, c))
    }

    /// Whether `other` is in the same major series (10.11.x and 10.11.y; 9.7.x and 9.7.y).
    pub fn same_series(&self, other: &Version) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// `10.11.18-MariaDB-0+deb12u1-log` → (MariaDB, 10.11.18); `8.0.36` → MySQL.
pub fn parse_server_version(v: &str) -> Option<(Flavor, Version)> {
    let head: String = v.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let ver = Version::parse(&head)?;
    let flavor = if v.to_lowercase().contains("mariadb") { Flavor::MariaDB } else { Flavor::MySQL };
    Some((flavor, ver))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_both_flavors() {
        assert_eq!(
            parse_server_version("10.11.18-MariaDB-0+deb12u1-log"),
            Some((Flavor::MariaDB, Version(10, 11, 18)))
        );
        assert_eq!(parse_server_version("8.0.36"), Some((Flavor::MySQL, Version(8, 0, 36))));
        assert_eq!(parse_server_version("9.7.4-2"), Some((Flavor::MySQL, Version(9, 7, 4))));
        assert_eq!(parse_server_version("5.7.19-log"), Some((Flavor::MySQL, Version(5, 7, 19))));
        assert_eq!(parse_server_version("garbage"), None);
    }

    #[test]
    fn flavors_parse_and_series_compare() {
        assert_eq!("MySQL".parse::<Flavor>().unwrap(), Flavor::MySQL);
        assert!("postgres".parse::<Flavor>().is_err());
        assert!(Version(10, 11, 18).same_series(&Version(10, 11, 19)));
        assert!(!Version(10, 11, 18).same_series(&Version(11, 8, 3)));
    }
}
