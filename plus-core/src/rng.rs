use rand::SeedableRng;

/// The RNG every `plus` core takes from its caller.
///
/// ChaCha with 8 rounds: fast, and, unlike `rand::rngs::StdRng`, its output for a seed is fixed by
/// its specification, so a simulation seed replays the same run on every machine and with every
/// future release of `rand`. Cores never create one themselves: the host seeds it and passes
/// `&mut SeededRng` (or any `rand::Rng`) in.
pub type SeededRng = rand_chacha::ChaCha8Rng;

/// A [`SeededRng`] seeded from a `u64`, the form seeds take on command lines and in
/// `PLUS_SIM_SEED`.
#[must_use]
pub fn seeded_rng(seed: u64) -> SeededRng {
    SeededRng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn same_seed_same_stream_and_stream_is_pinned() {
        let a: Vec<u32> = (0..4)
            .map({
                let mut r = seeded_rng(42);
                move |_| r.random()
            })
            .collect();
        let b: Vec<u32> = (0..4)
            .map({
                let mut r = seeded_rng(42);
                move |_| r.random()
            })
            .collect();
        assert_eq!(a, b);
        let c: u32 = seeded_rng(43).random();
        assert_ne!(a[0], c);
    }
}
