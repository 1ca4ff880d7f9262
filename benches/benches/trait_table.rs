//! The cost of abstraction (DESIGN.md, failure mode 4): a 5-level call tree
//! through trait methods, in four shapes computing the same values.
//!
//! - `sync_dyn`: plain `fn call(&self, u64) -> u64` on `Box<dyn Trait>`
//!   children: one indirect call per node, no allocation. stead's layers
//!   (handlers, middleware) have this shape.
//! - `native_async`: `async fn call(&self, u64) -> u64` in the trait (native
//!   async fn in traits, Rust 1.75+). Not dyn-compatible, so the tree is one
//!   statically composed type; the future is polled once with a no-op waker
//!   (every leaf is ready).
//! - `boxed_async`: `fn call(&self, u64) -> Pin<Box<dyn Future + Send + '_>>`
//!   on `Box<dyn Trait>` children: the `async_trait` shape, one allocation
//!   and one dynamic poll per node.
//! - `sync_static`: for reference, the synchronous tree composed statically
//!   like `native_async` (what the compiler can do with no dyn at all).
//!
//! Two shapes: `chain` (fan-out 1: 5 calls per tree) and `tree` (fan-out 2:
//! 1 + 2 + 4 + 8 + 16 = 31 calls per tree). Every node does a little
//! arithmetic specialised by const generics, and there are `VARIANTS` trees
//! whose every level has distinct code, picked in a pseudo-random order, so
//! neither the branch predictor nor the instruction cache sees one hot path.
//! All four shapes enter a tree through one indirect call (a `dyn` root or a
//! `fn` pointer), and the setup asserts that all four compute the same value
//! for every variant. Reported: time per call tree.

use std::array;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use stead_benches::poll_ready;

mod common;

/// Distinct trees (each level of each tree is distinct code). A power of two:
/// the level permutations below are odd multipliers modulo it.
const VARIANTS: usize = 256;
/// Length of the pseudo-random sequence of trees visited (a power of two).
const ORDER: usize = 4096;

/// The per-node work: a few ALU operations whose constants depend on the
/// node's variant `K` and level `L`, so every (K, L) is different machine code.
#[inline(always)]
fn mix<const K: usize, const L: usize>(x: u64) -> u64 {
    (x ^ (K as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .rotate_left(((K * 7 + L) % 61 + 1) as u32)
        .wrapping_add((L as u64).wrapping_mul(0x0100_0000_01B3))
}

// ---- sync, dyn ----

trait SyncLayer {
    fn call(&self, x: u64) -> u64;
}

struct SyncNode<const K: usize, const L: usize, const F: usize> {
    kids: [Box<dyn SyncLayer>; F],
}

impl<const K: usize, const L: usize, const F: usize> SyncLayer for SyncNode<K, L, F> {
    fn call(&self, x: u64) -> u64 {
        let mut acc = mix::<K, L>(x);
        for k in &self.kids {
            acc ^= k.call(acc);
        }
        acc
    }
}

struct SyncLeaf<const K: usize>;

impl<const K: usize> SyncLayer for SyncLeaf<K> {
    fn call(&self, x: u64) -> u64 {
        mix::<K, 5>(x)
    }
}

fn sync_node<const K: usize, const L: usize, const F: usize>(
    mut kid: impl FnMut() -> Box<dyn SyncLayer>,
) -> Box<dyn SyncLayer> {
    Box::new(SyncNode::<K, L, F> {
        kids: array::from_fn(|_| kid()),
    })
}

// ---- sync, static ----

trait StaticLayer {
    fn build() -> Self;
    fn call(&self, x: u64) -> u64;
}

struct StaticNode<const K: usize, const L: usize, const F: usize, C> {
    kids: [C; F],
}

impl<const K: usize, const L: usize, const F: usize, C: StaticLayer> StaticLayer
    for StaticNode<K, L, F, C>
{
    fn build() -> Self {
        StaticNode {
            kids: array::from_fn(|_| C::build()),
        }
    }

    fn call(&self, x: u64) -> u64 {
        let mut acc = mix::<K, L>(x);
        for k in &self.kids {
            acc ^= k.call(acc);
        }
        acc
    }
}

struct StaticLeaf<const K: usize>;

impl<const K: usize> StaticLayer for StaticLeaf<K> {
    fn build() -> Self {
        StaticLeaf
    }

    fn call(&self, x: u64) -> u64 {
        mix::<K, 5>(x)
    }
}

// ---- native async fn in trait ----

trait AsyncLayer {
    fn build() -> Self;
    async fn call(&self, x: u64) -> u64;
}

struct AsyncNode<const K: usize, const L: usize, const F: usize, C> {
    kids: [C; F],
}

impl<const K: usize, const L: usize, const F: usize, C: AsyncLayer> AsyncLayer
    for AsyncNode<K, L, F, C>
{
    fn build() -> Self {
        AsyncNode {
            kids: array::from_fn(|_| C::build()),
        }
    }

    async fn call(&self, x: u64) -> u64 {
        let mut acc = mix::<K, L>(x);
        for k in &self.kids {
            acc ^= k.call(acc).await;
        }
        acc
    }
}

struct AsyncLeaf<const K: usize>;

impl<const K: usize> AsyncLayer for AsyncLeaf<K> {
    fn build() -> Self {
        AsyncLeaf
    }

    async fn call(&self, x: u64) -> u64 {
        mix::<K, 5>(x)
    }
}

// ---- boxed futures (async_trait shape) ----

type BoxFuture<'a> = Pin<Box<dyn Future<Output = u64> + Send + 'a>>;

trait BoxedLayer: Send + Sync {
    fn call(&self, x: u64) -> BoxFuture<'_>;
}

struct BoxedNode<const K: usize, const L: usize, const F: usize> {
    kids: [Box<dyn BoxedLayer>; F],
}

impl<const K: usize, const L: usize, const F: usize> BoxedLayer for BoxedNode<K, L, F> {
    fn call(&self, x: u64) -> BoxFuture<'_> {
        Box::pin(async move {
            let mut acc = mix::<K, L>(x);
            for k in &self.kids {
                acc ^= k.call(acc).await;
            }
            acc
        })
    }
}

struct BoxedLeaf<const K: usize>;

impl<const K: usize> BoxedLayer for BoxedLeaf<K> {
    fn call(&self, x: u64) -> BoxFuture<'_> {
        Box::pin(async move { mix::<K, 5>(x) })
    }
}

fn boxed_node<const K: usize, const L: usize, const F: usize>(
    mut kid: impl FnMut() -> Box<dyn BoxedLayer>,
) -> Box<dyn BoxedLayer> {
    Box::new(BoxedNode::<K, L, F> {
        kids: array::from_fn(|_| kid()),
    })
}

// ---- one tree in all four shapes ----

type StaticTree<
    const K1: usize,
    const K2: usize,
    const K3: usize,
    const K4: usize,
    const K5: usize,
    const F: usize,
> = StaticNode<
    K1,
    1,
    F,
    StaticNode<K2, 2, F, StaticNode<K3, 3, F, StaticNode<K4, 4, F, StaticLeaf<K5>>>>,
>;

type AsyncTree<
    const K1: usize,
    const K2: usize,
    const K3: usize,
    const K4: usize,
    const K5: usize,
    const F: usize,
> = AsyncNode<
    K1,
    1,
    F,
    AsyncNode<K2, 2, F, AsyncNode<K3, 3, F, AsyncNode<K4, 4, F, AsyncLeaf<K5>>>>,
>;

struct Entry {
    sync_dyn: Box<dyn SyncLayer>,
    sync_static: fn(u64) -> u64,
    native_async: fn(u64) -> u64,
    boxed_async: Box<dyn BoxedLayer>,
}

fn run_static<
    const K1: usize,
    const K2: usize,
    const K3: usize,
    const K4: usize,
    const K5: usize,
    const F: usize,
>(
    x: u64,
) -> u64 {
    StaticTree::<K1, K2, K3, K4, K5, F>::build().call(x)
}

fn run_native<
    const K1: usize,
    const K2: usize,
    const K3: usize,
    const K4: usize,
    const K5: usize,
    const F: usize,
>(
    x: u64,
) -> u64 {
    let tree = AsyncTree::<K1, K2, K3, K4, K5, F>::build();
    poll_ready(tree.call(x))
}

impl Entry {
    fn new<
        const K1: usize,
        const K2: usize,
        const K3: usize,
        const K4: usize,
        const K5: usize,
        const F: usize,
    >() -> Entry {
        Entry {
            sync_dyn: sync_node::<K1, 1, F>(|| {
                sync_node::<K2, 2, F>(|| {
                    sync_node::<K3, 3, F>(|| {
                        sync_node::<K4, 4, F>(|| Box::new(SyncLeaf::<K5>) as Box<dyn SyncLayer>)
                    })
                })
            }),
            sync_static: run_static::<K1, K2, K3, K4, K5, F>,
            native_async: run_native::<K1, K2, K3, K4, K5, F>,
            boxed_async: boxed_node::<K1, 1, F>(|| {
                boxed_node::<K2, 2, F>(|| {
                    boxed_node::<K3, 3, F>(|| {
                        boxed_node::<K4, 4, F>(|| Box::new(BoxedLeaf::<K5>) as Box<dyn BoxedLayer>)
                    })
                })
            }),
        }
    }
}

/// Variant `k` of fan-out `f`: level `l` uses variant `(k * odd + c) % VARIANTS`,
/// a different permutation per level.
macro_rules! entry {
    ($k:expr, $f:expr) => {
        Entry::new::<
            { $k % VARIANTS },
            { ($k * 37 + 11) % VARIANTS },
            { ($k * 101 + 29) % VARIANTS },
            { ($k * 157 + 53) % VARIANTS },
            { ($k * 211 + 97) % VARIANTS },
            { $f },
        >()
    };
}

// Push entries $b, $b + 1, ... (2^n of them) by doubling.
macro_rules! v1 {
    ($t:ident, $f:expr, $b:expr) => {
        $t.push(entry!($b, $f));
    };
}
macro_rules! v2 {
    ($t:ident, $f:expr, $b:expr) => {
        v1!($t, $f, $b);
        v1!($t, $f, $b + 1);
    };
}
macro_rules! v4 {
    ($t:ident, $f:expr, $b:expr) => {
        v2!($t, $f, $b);
        v2!($t, $f, $b + 2);
    };
}
macro_rules! v8 {
    ($t:ident, $f:expr, $b:expr) => {
        v4!($t, $f, $b);
        v4!($t, $f, $b + 4);
    };
}
macro_rules! v16 {
    ($t:ident, $f:expr, $b:expr) => {
        v8!($t, $f, $b);
        v8!($t, $f, $b + 8);
    };
}
macro_rules! v32 {
    ($t:ident, $f:expr, $b:expr) => {
        v16!($t, $f, $b);
        v16!($t, $f, $b + 16);
    };
}
macro_rules! v64 {
    ($t:ident, $f:expr, $b:expr) => {
        v32!($t, $f, $b);
        v32!($t, $f, $b + 32);
    };
}
macro_rules! v128 {
    ($t:ident, $f:expr, $b:expr) => {
        v64!($t, $f, $b);
        v64!($t, $f, $b + 64);
    };
}
macro_rules! v256 {
    ($t:ident, $f:expr, $b:expr) => {
        v128!($t, $f, $b);
        v128!($t, $f, $b + 128);
    };
}

fn table<const F: usize>() -> Vec<Entry> {
    let mut t = Vec::with_capacity(VARIANTS);
    v256!(t, F, 0usize);
    assert_eq!(t.len(), VARIANTS);
    t
}

/// A fixed pseudo-random visiting order (xorshift64).
fn order() -> Vec<usize> {
    let mut s: u64 = 0x2545_F491_4F6C_DD1D;
    (0..ORDER)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % VARIANTS as u64) as usize
        })
        .collect()
}

fn bench_shape(c: &mut Criterion, shape: &str, table: &[Entry], order: &[usize]) {
    // The four shapes must agree, or the comparison is meaningless.
    for (k, e) in table.iter().enumerate() {
        for x in [0, 1, k as u64, u64::MAX] {
            let want = e.sync_dyn.call(x);
            assert_eq!((e.sync_static)(x), want, "{shape} variant {k}: static");
            assert_eq!((e.native_async)(x), want, "{shape} variant {k}: native");
            assert_eq!(
                poll_ready(e.boxed_async.call(x)),
                want,
                "{shape} variant {k}: boxed"
            );
        }
    }

    let mut g = c.benchmark_group("trait_table");
    let id = |name| BenchmarkId::new(name, shape);
    bench_one(&mut g, id("sync_dyn"), table, order, |e, x| {
        e.sync_dyn.call(x)
    });
    bench_one(&mut g, id("sync_static"), table, order, |e, x| {
        (e.sync_static)(x)
    });
    bench_one(&mut g, id("native_async"), table, order, |e, x| {
        (e.native_async)(x)
    });
    bench_one(&mut g, id("boxed_async"), table, order, |e, x| {
        poll_ready(e.boxed_async.call(x))
    });
    g.finish();
}

/// One column: generic over `f`, so the closure itself costs no indirect call.
fn bench_one(
    g: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    table: &[Entry],
    order: &[usize],
    f: impl Fn(&Entry, u64) -> u64,
) {
    g.bench_function(id, |b| {
        let mut i = 0usize;
        b.iter(|| {
            let e = &table[order[i % ORDER]];
            i = i.wrapping_add(1);
            f(e, black_box(i as u64))
        })
    });
}

fn trait_table(c: &mut Criterion) {
    let order = order();
    bench_shape(c, "chain", &table::<1>(), &order);
    bench_shape(c, "tree", &table::<2>(), &order);
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = trait_table
}
criterion_main!(benches);
