//! Parameter generators: values drawn from the seeded dataset, with its skew.
//!
//! | kind            | value                                                     |
//! |-----------------|-----------------------------------------------------------|
//! | `zipf`          | an id of `table`, busy accounts first (the seed's u^3 law) |
//! | `uniform`       | an id of `table`, uniformly                               |
//! | `recent`        | one of the `window` highest ids of `table` (`window` is given at scale 1 and scales with the dataset) |
//! | `int`           | an integer in [min, max]                                  |
//! | `choice`        | one of `values`                                           |
//! | `sample`        | one of `values` (strings or integers), as often as `weights` say |
//! | `text`          | `len` random letters                                      |
//! | `api_key`       | an API key of a user of `account`                         |
//! | `session_token` | a console session token of a user of `account`            |
//! | `user_of`       | a user id of `account`                                    |
//! | `database_of`   | a database id of `account`                                |
//! | `unique`        | an id unique to this write (for the write ledger)         |

use coldswap_dataset::{self as seed, Counts, DATABASES_PER_ACCOUNT, USERS_PER_ACCOUNT};
use std::sync::atomic::{AtomicU64, Ordering};

/// How a mix parameter draws its values.
#[derive(Debug, Clone, PartialEq)]
pub enum GenKind {
    /// Ids of a seeded table with the dataset's account skew.
    Zipf {
        /// The table.
        table: String,
    },
    /// Ids of a seeded table, uniformly.
    Uniform {
        /// The table.
        table: String,
    },
    /// One of the `window` newest ids of a table.
    Recent {
        /// The table.
        table: String,
        /// How many of the newest ids.
        window: u64,
    },
    /// An integer between `min` and `max`, uniformly.
    Int {
        /// Lowest value.
        min: i64,
        /// Highest value.
        max: i64,
    },
    /// One of the listed values, uniformly.
    Choice {
        /// The values.
        values: Vec<String>,
    },
    /// One of the values, each as often as its weight says (what `mix
    /// import` writes: the values a statement was seen with, and how often).
    Sample {
        /// The values.
        values: Vec<Value>,
        /// Running sums of the weights (the last is the total).
        cumulative: Vec<u64>,
    },
    /// Random letters of this length.
    Text {
        /// Length in characters.
        len: usize,
    },
    /// The API key of the account drawn by parameter number `account`.
    ApiKey {
        /// Index of the generator that drew the account.
        account: usize,
    },
    /// The console session token of the account drawn by parameter `account`.
    SessionToken {
        /// Index of the generator that drew the account.
        account: usize,
    },
    /// A user of the account drawn by parameter `account`.
    UserOf {
        /// Index of the generator that drew the account.
        account: usize,
    },
    /// A database of the account drawn by parameter `account`.
    DatabaseOf {
        /// Index of the generator that drew the account.
        account: usize,
    },
    /// An id no other request of any run or shard uses (for inserts).
    Unique,
}

impl GenKind {
    /// The dataset table a generator draws ids from, if any.
    pub fn table(&self) -> Option<&str> {
        match self {
            GenKind::Zipf { table } | GenKind::Uniform { table } | GenKind::Recent { table, .. } => Some(table),
            GenKind::ApiKey { .. }
            | GenKind::SessionToken { .. }
            | GenKind::UserOf { .. }
            | GenKind::DatabaseOf { .. } => Some("accounts"),
            _ => None,
        }
    }
}

/// A declared generator: `[generators] name = "..."` in a mix.
#[derive(Debug, Clone)]
pub struct GenSpec {
    /// Its name, as statements' `{name}` placeholders use it.
    pub name: String,
    /// How it draws.
    pub kind: GenKind,
    /// The mix file line it was declared on, for errors.
    pub line: usize,
}

/// A drawn value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
}

impl Value {
    /// The value as an integer, when it is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Str(s) => s.parse().ok(),
        }
    }
}

/// SplitMix64: small, fast, good enough for load generation.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (the same seed, the same draws).
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// The next 64 random bits (xorshift64*).
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Shared state of the generators for one run.
pub struct Generators {
    specs: Vec<GenSpec>,
    counts: Counts,
    unique_base: u64,
    unique_next: AtomicU64,
}

impl Generators {
    /// `shard` (0-based) keeps unique ids apart when several load machines
    /// write at once.
    pub fn new(specs: Vec<GenSpec>, counts: Counts, shard: u32) -> Generators {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        // 31 bits of time, 4 of shard, 28 of sequence: unique across runs and shards.
        let unique_base = ((secs & 0x7FFF_FFFF) << 32) | (((shard as u64) & 0xF) << 28);
        Generators { specs, counts, unique_base, unique_next: AtomicU64::new(1) }
    }

    /// The dataset's row counts the generators draw from.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    fn n(&self, table: &str) -> u64 {
        self.counts.get(table).max(1)
    }

    /// Draw values for one request: each generator at most once, so a
    /// parameter used twice has one value.
    pub fn draw(&self, rng: &mut Rng, needed: &[usize]) -> Vec<Option<Value>> {
        let mut vals: Vec<Option<Value>> = vec![None; self.specs.len()];
        for &i in needed {
            self.value(i, rng, &mut vals);
        }
        vals
    }

    fn value(&self, i: usize, rng: &mut Rng, vals: &mut Vec<Option<Value>>) -> Value {
        if let Some(v) = &vals[i] {
            return v.clone();
        }
        let acc = self.n("accounts");
        let v = match &self.specs[i].kind {
            GenKind::Zipf { table } => {
                let n = self.n(table);
                Value::Int(seed::zipf_account(rng.unit(), n) as i64)
            }
            GenKind::Uniform { table } => Value::Int(1 + rng.below(self.n(table)) as i64),
            GenKind::Recent { table, window } => {
                let n = self.n(table);
                let scaled = ((*window as f64) * self.counts.scale).ceil().max(1.0) as u64;
                let w = scaled.min(n);
                Value::Int((n - rng.below(w)) as i64)
            }
            GenKind::Int { min, max } => {
                let span = (*max as i128 - *min as i128 + 1) as u128;
                let r = (rng.next_u64() as u128) % span.max(1);
                Value::Int((*min as i128 + r as i128) as i64)
            }
            GenKind::Choice { values } => Value::Str(values[rng.below(values.len() as u64) as usize].clone()),
            GenKind::Sample { values, cumulative } => {
                let total = cumulative.last().copied().unwrap_or(1).max(1);
                let r = rng.below(total);
                let i = cumulative.partition_point(|c| *c <= r).min(values.len() - 1);
                values[i].clone()
            }
            GenKind::Text { len } => {
                const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
                Value::Str((0..*len).map(|_| A[rng.below(A.len() as u64) as usize] as char).collect())
            }
            GenKind::UserOf { account } => {
                let a = self.value(*account, rng, vals).as_i64().unwrap_or(1) as u64;
                Value::Int((a + acc * rng.below(USERS_PER_ACCOUNT)) as i64)
            }
            GenKind::DatabaseOf { account } => {
                let a = self.value(*account, rng, vals).as_i64().unwrap_or(1) as u64;
                Value::Int((a + acc * rng.below(DATABASES_PER_ACCOUNT)) as i64)
            }
            GenKind::ApiKey { account } => {
                // key k belongs to user ((k-1) % users) + 1
                let a = self.value(*account, rng, vals).as_i64().unwrap_or(1) as u64;
                let users = self.n("users");
                let keys = self.n("api_keys");
                let user = a + acc * rng.below(USERS_PER_ACCOUNT);
                let per_user = keys.div_ceil(users).max(1);
                let mut k = user + users * rng.below(per_user);
                if k > keys {
                    k = user.min(keys);
                }
                Value::Str(seed::api_key(k))
            }
            GenKind::SessionToken { account } => {
                // session s belongs to user ((s-1) % users) + 1
                let a = self.value(*account, rng, vals).as_i64().unwrap_or(1) as u64;
                let users = self.n("users");
                let sessions = self.n("console_sessions");
                let user = a + acc * rng.below(USERS_PER_ACCOUNT);
                let s = if user <= sessions { user } else { 1 + (user - 1) % sessions };
                let _ = users;
                Value::Str(seed::session_token(s))
            }
            GenKind::Unique => Value::Int((self.unique_base | self.unique_next.fetch_add(1, Ordering::Relaxed)) as i64),
        };
        vals[i] = Some(v.clone());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, kind: GenKind) -> GenSpec {
        GenSpec { name: name.into(), kind, line: 1 }
    }

    #[test]
    fn draws_follow_the_dataset() {
        let counts = Counts::at(0.01);
        let g = Generators::new(
            vec![
                spec("account", GenKind::Zipf { table: "accounts".into() }),
                spec("key", GenKind::ApiKey { account: 0 }),
                spec("user", GenKind::UserOf { account: 0 }),
                spec("db", GenKind::DatabaseOf { account: 0 }),
                spec("w", GenKind::Unique),
                spec("job", GenKind::Recent { table: "jobs".into(), window: 10_000 }),
            ],
            counts.clone(),
            0,
        );
        let mut rng = Rng::new(7);
        let acc = counts.get("accounts") as i64;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5000 {
            let v = g.draw(&mut rng, &[1, 2, 3, 4, 5]);
            let a = v[0].as_ref().unwrap().as_i64().unwrap();
            assert!((1..=acc).contains(&a));
            let u = v[2].as_ref().unwrap().as_i64().unwrap();
            assert_eq!((u - 1) % acc + 1, a, "user {u} is not of account {a}");
            let d = v[3].as_ref().unwrap().as_i64().unwrap();
            assert_eq!((d - 1) % acc + 1, a);
            let Value::Str(k) = v[1].as_ref().unwrap() else { panic!() };
            // the key's id (hex suffix) maps back to a user of the account
            let kid = u64::from_str_radix(&k[11..], 16).unwrap() as i64;
            let users = counts.get("users") as i64;
            assert_eq!(((kid - 1) % users) % acc + 1, a, "key {k}");
            assert!(seen.insert(v[4].as_ref().unwrap().as_i64().unwrap()));
            let j = v[5].as_ref().unwrap().as_i64().unwrap();
            assert!(j > counts.get("jobs") as i64 - 100 && j <= counts.get("jobs") as i64);
        }
    }

    #[test]
    fn rng_is_uniformish() {
        let mut r = Rng::new(1);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            buckets[(r.unit() * 10.0) as usize] += 1;
        }
        assert!(buckets.iter().all(|b| (9_000..11_000).contains(b)), "{buckets:?}");
    }

    #[test]
    fn samples_follow_their_weights() {
        let g = Generators::new(
            vec![spec(
                "s",
                GenKind::Sample { values: vec![Value::Int(7), Value::Str("x".into())], cumulative: vec![3, 4] },
            )],
            Counts::at(0.01),
            0,
        );
        let mut rng = Rng::new(3);
        let sevens = (0..40_000).filter(|_| g.draw(&mut rng, &[0])[0] == Some(Value::Int(7))).count();
        assert!((29_000..31_000).contains(&sevens), "{sevens} of 40000, weight says 30000");
    }
}
