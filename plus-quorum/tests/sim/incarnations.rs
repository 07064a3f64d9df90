//! The `created` version clients see, checked across sightings: a key's incarnation (from its
//! creation to its deletion) is one, whoever reports it. Two leaders that both accepted writes
//! (a split brain) give one key two incarnations over the same versions, which the values and
//! versions alone may not show.

use std::collections::{BTreeMap, HashMap};

/// Every `(version, created)` clients saw, per key.
#[derive(Debug, Default)]
pub struct Incarnations {
    seen: HashMap<String, BTreeMap<u64, u64>>,
}

impl Incarnations {
    /// Records that `key` was seen at `version`, created at `created`; why it cannot be, if it
    /// contradicts a sighting before.
    ///
    /// The rules: a key is created no later than any of its versions, and not at 0; one version
    /// of a key has one creation; and a key seen at `v2` created at `c2` existed, as that same
    /// incarnation, at every version from `c2` to `v2`, so any sighting in between reports
    /// `c2` too.
    pub fn saw(&mut self, key: &str, version: u64, created: u64) -> Result<(), String> {
        if created == 0 || created > version {
            return Err(format!("{key} at version {version} reports creation at {created}"));
        }
        let sightings = self.seen.entry(key.to_owned()).or_default();
        if let Some(&other) = sightings.get(&version) {
            if other != created {
                return Err(format!(
                    "{key} at version {version} reported created at {other} and at {created}"
                ));
            }
            return Ok(());
        }
        // Sightings within this one's life must be of it.
        if let Some((&v, &c)) = sightings.range(created..version).find(|&(_, &c)| c != created) {
            return Err(format!(
                "{key} seen at version {version} created at {created}, so alive since, but at version {v} it reported creation at {c}: two incarnations at once"
            ));
        }
        // Later sightings whose life spans this version must be of this incarnation.
        if let Some((&v, &c)) =
            sightings.range(version + 1..).find(|&(_, &c)| c <= version && c != created)
        {
            return Err(format!(
                "{key} seen at version {v} created at {c}, so alive at {version}, but at version {version} it reported creation at {created}: two incarnations at once"
            ));
        }
        sightings.insert(version, created);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Incarnations;

    #[test]
    fn one_incarnation_across_versions_and_a_recreation_pass() {
        let mut seen = Incarnations::default();
        // Created at 3, set again at 7 and 9; deleted, created again at 12.
        for (version, created) in [(7, 3), (3, 3), (9, 3), (12, 12), (15, 12)] {
            seen.saw("k", version, created).unwrap();
        }
        // Another key is its own.
        seen.saw("other", 8, 8).unwrap();
    }

    #[test]
    fn a_split_brain_seen_through_created_is_refused() {
        // One client sees the key created at 5 (one leader's write) and set at 9; another sees
        // it at 7 as created at 6 (the other leader's incarnation): the values may all differ
        // and each version be unique, but both cannot be.
        let mut seen = Incarnations::default();
        seen.saw("k", 9, 5).unwrap();
        assert!(seen.saw("k", 7, 6).unwrap_err().contains("two incarnations"));
        // The same, seen in the other order.
        let mut seen = Incarnations::default();
        seen.saw("k", 7, 6).unwrap();
        assert!(seen.saw("k", 9, 5).unwrap_err().contains("two incarnations"));
        // One version, two creations.
        let mut seen = Incarnations::default();
        seen.saw("k", 9, 5).unwrap();
        assert!(seen.saw("k", 9, 4).is_err());
        // A creation after the version, or at 0.
        assert!(Incarnations::default().saw("k", 4, 5).is_err());
        assert!(Incarnations::default().saw("k", 4, 0).is_err());
    }
}
