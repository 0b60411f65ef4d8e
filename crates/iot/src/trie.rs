//! The subscription index: which (filter, subscriber) pairs match a topic.
//!
//! A trie over topic levels with dedicated `+` and `#` slots, so a lookup costs one hash
//! probe per level per live branch rather than a scan of every subscription. Matching is
//! exactly [`crate::topic_matches`] (property-tested against it), IoT Core semantics
//! included: `a/#` does not match `a`, and first-level wildcards skip `$` topics.
//!
//! Filters are expected to have passed [`crate::validate_topic_filter`]: walks recurse once
//! per level, which the slash limit keeps shallow.

use std::collections::HashMap;
use std::hash::Hash;

/// Subscription index from topic filters to subscriber keys `K` with values `V`
/// (e.g. granted QoS). At most one entry per (filter, key).
#[derive(Debug, Clone)]
pub struct TopicTrie<K, V> {
    root: Node<K, V>,
    len: usize,
}

#[derive(Debug, Clone)]
struct Node<K, V> {
    children: HashMap<Box<str>, Node<K, V>>,
    plus: Option<Box<Node<K, V>>>,
    hash: Option<Box<Node<K, V>>>,
    /// Subscriptions whose filter ends at this node.
    here: Option<Leaf<K, V>>,
}

#[derive(Debug, Clone)]
struct Leaf<K, V> {
    /// Kept so visits can report the filter without rebuilding it from the path.
    filter: Box<str>,
    entries: HashMap<K, V>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Node {
            children: HashMap::new(),
            plus: None,
            hash: None,
            here: None,
        }
    }
}

impl<K, V> Node<K, V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_none()
            && self.here.is_none()
    }

    fn visit_here(&self, visit: &mut impl FnMut(&str, &K, &V)) {
        if let Some(leaf) = &self.here {
            for (k, v) in &leaf.entries {
                visit(&leaf.filter, k, v);
            }
        }
    }

    #[cfg(test)]
    fn count_nodes(&self) -> usize {
        1 + self.children.values().map(Node::count_nodes).sum::<usize>()
            + self.plus.as_ref().map_or(0, |n| n.count_nodes())
            + self.hash.as_ref().map_or(0, |n| n.count_nodes())
    }
}

impl<K, V> Default for TopicTrie<K, V> {
    fn default() -> Self {
        TopicTrie {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> TopicTrie<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of (filter, key) entries.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces the entry for (`filter`, `key`); returns the value it replaced.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = match level {
                "+" => node.plus.get_or_insert_with(Box::default),
                "#" => node.hash.get_or_insert_with(Box::default),
                _ => {
                    // Probe first so an existing level costs no allocation.
                    if !node.children.contains_key(level) {
                        node.children.insert(level.into(), Node::default());
                    }
                    node.children
                        .get_mut(level)
                        .expect("child was just ensured")
                }
            };
        }
        let leaf = node.here.get_or_insert_with(|| Leaf {
            filter: filter.into(),
            entries: HashMap::new(),
        });
        let old = leaf.entries.insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the entry for (`filter`, `key`), pruning nodes left empty so an index that
    /// shrinks gives its memory back.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let old = remove_in(&mut self.root, filter.split('/'), key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// The value stored for (`filter`, `key`).
    pub fn get(&self, filter: &str, key: &K) -> Option<&V> {
        let mut node = &self.root;
        for level in filter.split('/') {
            node = match level {
                "+" => node.plus.as_deref()?,
                "#" => node.hash.as_deref()?,
                _ => node.children.get(level)?,
            };
        }
        node.here.as_ref()?.entries.get(key)
    }

    /// Calls `visit(filter, key, value)` once for every entry whose filter matches `topic`
    /// (as [`crate::topic_matches`]), in no particular order. A key subscribed through
    /// several matching filters is visited once per filter; deduplicating is the caller's.
    pub fn for_each_match(&self, topic: &str, mut visit: impl FnMut(&str, &K, &V)) {
        // `$` topics are invisible to first-level wildcards, so skip those slots up front.
        let dollar = topic.starts_with('$');
        visit_matches(&self.root, Some(topic), !dollar, &mut visit);
    }

    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.root.count_nodes()
    }
}

/// `rest` is the unconsumed part of the topic, `None` once every level is consumed
/// (distinct from `Some("")`, a final empty level).
fn visit_matches<K, V>(
    node: &Node<K, V>,
    rest: Option<&str>,
    wildcards: bool,
    visit: &mut impl FnMut(&str, &K, &V),
) {
    let Some(rest) = rest else {
        node.visit_here(visit);
        return;
    };
    let (level, next) = match rest.split_once('/') {
        Some((level, next)) => (level, Some(next)),
        None => (rest, None),
    };
    if wildcards {
        // `#` here covers this level and everything after it: at least one level, as IoT.
        if let Some(hash) = &node.hash {
            hash.visit_here(visit);
        }
        if let Some(plus) = &node.plus {
            visit_matches(plus, next, true, visit);
        }
    }
    if let Some(child) = node.children.get(level) {
        visit_matches(child, next, true, visit);
    }
}

fn remove_in<'f, K: Eq + Hash, V>(
    node: &mut Node<K, V>,
    mut levels: std::str::Split<'f, char>,
    key: &K,
) -> Option<V> {
    let Some(level) = levels.next() else {
        let leaf = node.here.as_mut()?;
        let old = leaf.entries.remove(key)?;
        if leaf.entries.is_empty() {
            node.here = None;
        } else {
            shrink_if_sparse(&mut leaf.entries);
        }
        return Some(old);
    };
    match level {
        "+" => {
            let child = node.plus.as_deref_mut()?;
            let old = remove_in(child, levels, key)?;
            if child.is_empty() {
                node.plus = None;
            }
            Some(old)
        }
        "#" => {
            let child = node.hash.as_deref_mut()?;
            let old = remove_in(child, levels, key)?;
            if child.is_empty() {
                node.hash = None;
            }
            Some(old)
        }
        _ => {
            let child = node.children.get_mut(level)?;
            let old = remove_in(child, levels, key)?;
            if child.is_empty() {
                node.children.remove(level);
                shrink_if_sparse(&mut node.children);
            }
            Some(old)
        }
    }
}

/// Hash maps never shrink on their own; a map that once held many subscribers (a busy
/// filter, or the root's first levels) would otherwise keep its peak size forever.
fn shrink_if_sparse<A: Eq + Hash, B>(map: &mut HashMap<A, B>) {
    if map.capacity() > 16 && map.len() * 4 < map.capacity() {
        map.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::topic_matches;
    use proptest::prelude::*;

    fn matches(trie: &TopicTrie<u8, u32>, topic: &str) -> Vec<(String, u8, u32)> {
        let mut out = Vec::new();
        trie.for_each_match(topic, |f, k, v| out.push((f.to_owned(), *k, *v)));
        out.sort();
        out
    }

    fn m(f: &str, k: u8, v: u32) -> (String, u8, u32) {
        (f.to_owned(), k, v)
    }

    #[test]
    fn empty_trie() {
        let t: TopicTrie<u8, u32> = TopicTrie::new();
        assert!(t.is_empty());
        assert_eq!(t.len(), 0);
        assert!(matches(&t, "a").is_empty());
        assert_eq!(t.node_count(), 1);
    }

    #[test]
    fn insert_replaces_per_filter_and_key() {
        let mut t = TopicTrie::new();
        assert_eq!(t.insert("a/b", 1u8, 0u32), None);
        assert_eq!(t.insert("a/b", 1, 1), Some(0));
        assert_eq!(t.insert("a/b", 2, 0), None);
        assert_eq!(t.insert("a/+", 1, 0), None);
        assert_eq!(t.len(), 3);
        assert_eq!(t.get("a/b", &1), Some(&1));
        assert_eq!(t.get("a/+", &2), None);
        assert_eq!(
            matches(&t, "a/b"),
            vec![m("a/+", 1, 0), m("a/b", 1, 1), m("a/b", 2, 0)]
        );
    }

    #[test]
    fn iot_core_semantics() {
        let mut t = TopicTrie::new();
        for (i, f) in [
            "sensor/#",
            "#",
            "+",
            "+/#",
            "$aws/events/#",
            "$aws/events/presence/+/c1",
            "sensor",
            "sensor/+",
        ]
        .into_iter()
        .enumerate()
        {
            t.insert(f, 0u8, i as u32);
        }
        let filters = |topic: &str| -> Vec<String> {
            matches(&t, topic).into_iter().map(|(f, _, _)| f).collect()
        };
        assert_eq!(filters("sensor"), vec!["#", "+", "sensor"]);
        assert_eq!(filters("sensor/"), vec!["#", "+/#", "sensor/#", "sensor/+"]);
        assert_eq!(filters("sensor/x/y"), vec!["#", "+/#", "sensor/#"]);
        assert_eq!(
            filters("$aws/events/presence/connected/c1"),
            vec!["$aws/events/#", "$aws/events/presence/+/c1"]
        );
        assert!(filters("$SYS").is_empty());
    }

    #[test]
    fn remove_prunes_nodes() {
        let mut t = TopicTrie::new();
        t.insert("a/b/c", 1u8, 0u32);
        t.insert("a/+/#", 1, 0);
        t.insert("a/b", 2, 0);
        let full = t.node_count();
        assert_eq!(t.remove("a/b/c", &2), None);
        assert_eq!(t.remove("a/b/c/d", &1), None);
        assert_eq!(t.remove("x", &1), None);
        assert_eq!(t.node_count(), full);
        assert_eq!(t.remove("a/b/c", &1), Some(0));
        assert_eq!(t.node_count(), full - 1);
        assert_eq!(t.remove("a/+/#", &1), Some(0));
        assert_eq!(t.remove("a/b", &2), Some(0));
        assert!(t.is_empty());
        assert_eq!(t.node_count(), 1);
        assert!(matches(&t, "a/b").is_empty());
    }

    #[test]
    fn many_subscribers_then_none() {
        let mut t = TopicTrie::new();
        for k in 0..=255u8 {
            t.insert("busy/topic", k, u32::from(k));
            t.insert(&format!("client/{k}/#"), k, 0);
        }
        assert_eq!(t.len(), 512);
        assert_eq!(matches(&t, "busy/topic").len(), 256);
        assert_eq!(matches(&t, "client/7/x"), vec![m("client/7/#", 7, 0)]);
        for k in 0..=255u8 {
            assert_eq!(t.remove("busy/topic", &k), Some(u32::from(k)));
            assert_eq!(t.remove(&format!("client/{k}/#"), &k), Some(0));
        }
        assert!(t.is_empty());
        assert_eq!(t.node_count(), 1);
    }

    const LEVELS: &[&str] = &["a", "b", "", "$x", "$aws", "+", "#", "a+"];

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(LEVELS), 1..5).prop_map(|l| l.join("/"))
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String, u8, u32),
        Remove(String, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (path(), 0..3u8, any::<u32>()).prop_map(|(f, k, v)| Op::Insert(f, k, v)),
            (path(), 0..3u8).prop_map(|(f, k)| Op::Remove(f, k)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        // Filters and topics come from the same alphabet, invalid filters included: the
        // trie must agree with `topic_matches` on every input, not only valid ones.
        #[test]
        fn trie_matches_brute_force(
            subs in prop::collection::vec((path(), 0..3u8, any::<u32>()), 0..24),
            topics in prop::collection::vec(path(), 1..16),
        ) {
            let mut trie = TopicTrie::new();
            let mut model: HashMap<(String, u8), u32> = HashMap::new();
            for (f, k, v) in &subs {
                trie.insert(f, *k, *v);
                model.insert((f.clone(), *k), *v);
            }
            prop_assert_eq!(trie.len(), model.len());
            for topic in &topics {
                let mut expected: Vec<_> = model
                    .iter()
                    .filter(|((f, _), _)| topic_matches(f, topic))
                    .map(|((f, k), v)| (f.clone(), *k, *v))
                    .collect();
                expected.sort();
                prop_assert_eq!(matches(&trie, topic), expected, "topic {:?}", topic);
            }
        }

        #[test]
        fn insert_remove_follow_model(ops in prop::collection::vec(op(), 0..64)) {
            let mut trie = TopicTrie::new();
            let mut model: Vec<(String, u8, u32)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(f, k, v) => {
                        let pos = model.iter().position(|(mf, mk, _)| *mf == f && *mk == k);
                        let expected = match pos {
                            Some(i) => Some(std::mem::replace(&mut model[i].2, v)),
                            None => {
                                model.push((f.clone(), k, v));
                                None
                            }
                        };
                        prop_assert_eq!(trie.insert(&f, k, v), expected);
                    }
                    Op::Remove(f, k) => {
                        let pos = model.iter().position(|(mf, mk, _)| *mf == f && *mk == k);
                        let expected = pos.map(|i| model.swap_remove(i).2);
                        prop_assert_eq!(trie.remove(&f, &k), expected);
                    }
                }
                prop_assert_eq!(trie.len(), model.len());
                prop_assert_eq!(trie.is_empty(), model.is_empty());
            }
            for (f, k, v) in &model {
                prop_assert_eq!(trie.get(f, k), Some(v));
            }
            for (f, k, v) in std::mem::take(&mut model) {
                prop_assert_eq!(trie.remove(&f, &k), Some(v));
            }
            prop_assert!(trie.is_empty());
            prop_assert_eq!(trie.node_count(), 1);
        }
    }
}
