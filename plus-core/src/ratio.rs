use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// A fraction in `[0, 1]`: a maximum pull-out ratio, a failure threshold, a load.
///
/// Parsed from a percentage (`"25%"`, `"12.5%"`) or a plain fraction (`"0.25"`); NaN, infinities
/// and values outside the range are rejected. Displayed as a percentage. In serde it is written
/// as a number (`0.25`) and read from either a number or a string of either form.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Ratio(f64);

impl Ratio {
    /// Zero: nothing.
    pub const ZERO: Ratio = Ratio(0.0);
    /// One: everything.
    pub const ONE: Ratio = Ratio(1.0);

    /// Wraps a fraction in `[0, 1]`.
    ///
    /// # Errors
    /// [`Error::InvalidRatio`] for NaN, an infinity, or a value outside `[0, 1]`.
    pub fn new(fraction: f64) -> Result<Self, Error> {
        let reject = |reason| Error::InvalidRatio { value: fraction.to_string(), reason };
        if !fraction.is_finite() {
            return Err(reject("must be a finite number"));
        }
        if !(0.0..=1.0).contains(&fraction) {
            return Err(reject("must be between 0 and 1 (0% and 100%)"));
        }
        // -0.0 passes the range check; store +0.0 so that equal ratios print alike.
        Ok(Self(fraction + 0.0))
    }

    /// Wraps a percentage in `[0, 100]` (`25.0` means 25%).
    ///
    /// # Errors
    /// [`Error::InvalidRatio`] for NaN, an infinity, or a value outside `[0, 100]`.
    pub fn from_percent(percent: f64) -> Result<Self, Error> {
        Self::new(percent / 100.0).map_err(|err| match err {
            Error::InvalidRatio { reason, .. } => {
                Error::InvalidRatio { value: format!("{percent}%"), reason }
            }
            other => other,
        })
    }

    /// The fraction, in `[0, 1]`.
    #[must_use]
    pub fn get(self) -> f64 {
        self.0
    }

    /// The percentage, in `[0, 100]`.
    #[must_use]
    pub fn percent(self) -> f64 {
        self.0 * 100.0
    }

    /// `floor(self x n)`, the whole number of items out of `n` this ratio allows.
    ///
    /// Computed so that a ratio written as a percentage gives the count a person expects:
    /// `5%` of 100 is 5 even though `0.05 * 100.0` is `5.000000000000001` in binary floating point
    /// and `0.07 * 100.0` is `7.000000000000001`.
    #[must_use]
    pub fn floor_of(self, n: usize) -> usize {
        let exact = self.0 * n as f64;
        let rounded = exact.round();
        // Within a few ulps of a whole number it *is* that number; floating error must not lose
        // (or gain) a host.
        let value = if (exact - rounded).abs() <= 1e-9 * exact.abs().max(1.0) {
            rounded
        } else {
            exact.floor()
        };
        // `value` is within [0, n] because the ratio is within [0, 1].
        value as usize
    }

    /// `ceil(self x n)`, rounding a near-whole product the same way as [`Ratio::floor_of`].
    #[must_use]
    pub fn ceil_of(self, n: usize) -> usize {
        let exact = self.0 * n as f64;
        let rounded = exact.round();
        let value = if (exact - rounded).abs() <= 1e-9 * exact.abs().max(1.0) {
            rounded
        } else {
            exact.ceil()
        };
        value as usize
    }
}

impl FromStr for Ratio {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let text = s.trim();
        let reject = |reason| Error::InvalidRatio { value: s.to_owned(), reason };
        if let Some(percent) = text.strip_suffix('%') {
            let percent: f64 = percent.trim().parse().map_err(|_| reject("is not a percentage"))?;
            Self::from_percent(percent).map_err(|err| match err {
                Error::InvalidRatio { reason, .. } => reject(reason),
                other => other,
            })
        } else {
            let fraction: f64 = text.parse().map_err(|_| reject("is not a number"))?;
            Self::new(fraction).map_err(|err| match err {
                Error::InvalidRatio { reason, .. } => reject(reason),
                other => other,
            })
        }
    }
}

impl TryFrom<f64> for Ratio {
    type Error = Error;
    fn try_from(fraction: f64) -> Result<Self, Error> {
        Self::new(fraction)
    }
}

impl From<Ratio> for f64 {
    fn from(ratio: Ratio) -> f64 {
        ratio.0
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.percent())
    }
}

impl Serialize for Ratio {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(f64),
            Text(String),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Number(n) => Ratio::new(n),
            Repr::Text(t) => t.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<f64, &str>) {
        match (input.parse::<Ratio>(), expected) {
            (Ok(r), Ok(want)) => {
                assert!((r.get() - want).abs() < 1e-12, "{input}: {r:?} != {want}");
            }
            (Err(Error::InvalidRatio { reason, value }), Err(want)) => {
                assert_eq!(reason, want, "{input}");
                assert_eq!(value, input);
            }
            (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parse_table() {
        check("25%", Ok(0.25));
        check(" 12.5 % ", Ok(0.125));
        check("0.25", Ok(0.25));
        check("0", Ok(0.0));
        check("1", Ok(1.0));
        check("100%", Ok(1.0));
        check("101%", Err("must be between 0 and 1 (0% and 100%)"));
        check("-0.1", Err("must be between 0 and 1 (0% and 100%)"));
        check("NaN", Err("must be a finite number"));
        check("inf", Err("must be a finite number"));
        check("abc", Err("is not a number"));
        check("x%", Err("is not a percentage"));
    }

    #[test]
    fn floor_and_ceil_forgive_binary_rounding() {
        let five = Ratio::from_percent(5.0).unwrap();
        assert_eq!(five.floor_of(100), 5);
        assert_eq!(Ratio::from_percent(7.0).unwrap().floor_of(100), 7);
        assert_eq!(Ratio::from_percent(25.0).unwrap().floor_of(20), 5);
        assert_eq!(Ratio::from_percent(25.0).unwrap().floor_of(21), 5);
        assert_eq!(Ratio::from_percent(25.0).unwrap().ceil_of(21), 6);
        assert_eq!(Ratio::from_percent(70.0).unwrap().ceil_of(10), 7);
        assert_eq!(Ratio::ONE.floor_of(3), 3);
        assert_eq!(Ratio::ZERO.ceil_of(3), 0);
    }

    #[test]
    fn display_is_a_percentage() {
        assert_eq!("0.25".parse::<Ratio>().unwrap().to_string(), "25%");
    }

    #[test]
    fn serde_accepts_numbers_and_percentages() {
        let a: Ratio = serde_yaml::from_str("0.5").unwrap();
        let b: Ratio = serde_yaml::from_str("'50%'").unwrap();
        assert_eq!(a, b);
        assert!(serde_yaml::from_str::<Ratio>("2").is_err());
        assert_eq!(serde_yaml::to_string(&a).unwrap().trim(), "0.5");
    }

    mod proptests {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn floor_never_exceeds_n_and_ceil_never_below_floor(f in 0.0f64..=1.0, n in 0usize..100_000) {
                let r = Ratio::new(f).unwrap();
                prop_assert!(r.floor_of(n) <= n);
                prop_assert!(r.ceil_of(n) <= n);
                prop_assert!(r.floor_of(n) <= r.ceil_of(n));
            }

            #[test]
            fn every_float_is_accepted_or_rejected_without_panic(f in proptest::num::f64::ANY) {
                let inside = f.is_finite() && (0.0..=1.0).contains(&f);
                prop_assert_eq!(Ratio::new(f).is_ok(), inside);
            }
        }
    }
}
