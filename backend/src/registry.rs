//! The registry: every live object by id, and the LRU lists.
//!
//! Owns: the slot table (id → object), each object's links in its LRU list
//! and in its owner's object list, and the list heads. All of it sits behind
//! one lock — the manager's *LRU lock*, TTM's `lru_lock` — held only for
//! O(1) list surgery and for copying out short candidate batches, never
//! across I/O and never while waiting for an object lock.
//!
//! Lists are intrusive and index-based (`u32` links in the slot table), so
//! moving an object to the tail, removing it and inserting it are O(1) and
//! cost no allocation.
//!
//! Must not: look at object state (it only knows the list key the caller
//! computed under the object lock).

use std::collections::HashMap;
use std::sync::Arc;

use crate::object::Object;
use crate::types::ObjectId;

const NIL: u32 = u32::MAX;

/// Which LRU list an object is on. Lists are kept so every walk touches
/// only objects it can act on: cost grows with the work done, not with the
/// number of live objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ListKey {
    /// Not on any list: unpopulated, purged, pinned or dead.
    None,
    /// DONTNEED, populated, unpinned: purged first, per owner and region.
    Purgeable { owner: u32, region: u8 },
    /// WILLNEED, populated, unpinned, not yet released: evicted by priority.
    Evictable { region: u8, priority: u8 },
    /// WILLNEED objects whose pages the shrinker already released.
    Swapped { region: u8 },
}

impl ListKey {
    /// The region whose objects the list holds, if any.
    pub(crate) fn region(&self) -> Option<u8> {
        match *self {
            ListKey::Purgeable { region, .. }
            | ListKey::Evictable { region, .. }
            | ListKey::Swapped { region } => Some(region),
            ListKey::None => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Links {
    prev: u32,
    next: u32,
}

const UNLINKED: Links = Links {
    prev: NIL,
    next: NIL,
};

#[derive(Debug)]
struct Slot {
    object: Option<Arc<Object>>,
    generation: u32,
    key: ListKey,
    lru: Links,
    by_owner: Links,
    owner: u32,
}

#[derive(Debug, Clone, Copy)]
struct Head {
    head: u32,
    tail: u32,
    len: usize,
}

impl Head {
    const EMPTY: Head = Head {
        head: NIL,
        tail: NIL,
        len: 0,
    };
}

/// The slot table and the lists. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    slots: Vec<Slot>,
    free: Vec<u32>,
    lists: HashMap<ListKey, Head>,
    owners: HashMap<u32, Head>,
    live: usize,
}

/// Which link pair of a slot a list operation uses.
#[derive(Clone, Copy)]
enum Chain {
    Lru,
    Owner,
}

impl Registry {
    /// Files a new object: `make` builds it with the id it will have.
    pub fn insert(
        &mut self,
        owner: u32,
        make: impl FnOnce(ObjectId) -> Object,
    ) -> Option<Arc<Object>> {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.slots.len()).ok().filter(|i| *i != NIL)?;
                self.slots.push(Slot {
                    object: None,
                    generation: 0,
                    key: ListKey::None,
                    lru: UNLINKED,
                    by_owner: UNLINKED,
                    owner,
                });
                i
            }
        };
        let slot = &mut self.slots[index as usize];
        let id = ObjectId::new(index, slot.generation);
        let object = Arc::new(make(id));
        slot.object = Some(object.clone());
        slot.owner = owner;
        slot.key = ListKey::None;
        self.link_tail(Chain::Owner, index);
        self.live += 1;
        Some(object)
    }

    fn slot(&self, id: ObjectId) -> Option<&Slot> {
        self.slots
            .get(id.index() as usize)
            .filter(|s| s.generation == id.generation() && s.object.is_some())
    }

    /// The live object with this id.
    pub fn get(&self, id: ObjectId) -> Option<Arc<Object>> {
        self.slot(id).and_then(|s| s.object.clone())
    }

    /// Forgets an object (its slot is reused with the next generation).
    pub fn remove(&mut self, id: ObjectId) {
        if self.slot(id).is_none() {
            return;
        }
        let index = id.index();
        self.unlink(Chain::Lru, index);
        self.unlink(Chain::Owner, index);
        let slot = &mut self.slots[index as usize];
        slot.object = None;
        slot.key = ListKey::None;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        self.live -= 1;
    }

    /// Puts the object on the list `key` (at the tail: most recently used),
    /// unless it already is on it.
    pub fn relist(&mut self, id: ObjectId, key: ListKey) {
        let Some(slot) = self.slot(id) else { return };
        if slot.key == key {
            return;
        }
        let index = id.index();
        self.unlink(Chain::Lru, index);
        self.slots[index as usize].key = key;
        if key != ListKey::None {
            self.link_tail(Chain::Lru, index);
        }
    }

    /// Marks the object most recently used within its list.
    pub fn touch(&mut self, id: ObjectId) {
        let Some(slot) = self.slot(id) else { return };
        if slot.key == ListKey::None || slot.lru.next == NIL {
            return;
        }
        let index = id.index();
        self.unlink(Chain::Lru, index);
        self.link_tail(Chain::Lru, index);
    }

    /// The list an object is on.
    pub fn key_of(&self, id: ObjectId) -> Option<ListKey> {
        self.slot(id).map(|s| s.key)
    }

    /// Objects on list `key`.
    #[cfg(test)]
    pub fn list_len(&self, key: ListKey) -> usize {
        self.lists.get(&key).map_or(0, |h| h.len)
    }

    /// Every non-empty list whose key satisfies `pred`, with its length.
    pub fn lists_where(&self, pred: impl Fn(&ListKey) -> bool) -> Vec<(ListKey, usize)> {
        self.lists
            .iter()
            .filter(|(k, _)| pred(k))
            .map(|(k, h)| (*k, h.len))
            .collect()
    }

    /// Appends up to `max` objects from the head (least recently used) of
    /// list `key` that satisfy `keep` to `out`, looking at no more than
    /// `walk` objects.
    pub fn candidates(
        &self,
        key: ListKey,
        max: usize,
        walk: usize,
        keep: impl Fn(&Object) -> bool,
        out: &mut Vec<Arc<Object>>,
    ) {
        let Some(head) = self.lists.get(&key) else {
            return;
        };
        let (mut at, mut taken, mut looked) = (head.head, 0, 0);
        while at != NIL && taken < max && looked < walk {
            let slot = &self.slots[at as usize];
            if let Some(obj) = &slot.object {
                if keep(obj) {
                    out.push(obj.clone());
                    taken += 1;
                }
            }
            looked += 1;
            at = slot.lru.next;
        }
    }

    /// Every live object of an owner, oldest first.
    pub fn owner_objects(&self, owner: u32) -> Vec<Arc<Object>> {
        let mut out = Vec::new();
        let Some(head) = self.owners.get(&owner) else {
            return out;
        };
        let mut at = head.head;
        while at != NIL {
            let slot = &self.slots[at as usize];
            out.extend(slot.object.clone());
            at = slot.by_owner.next;
        }
        out
    }

    /// Every live object.
    pub fn all_objects(&self) -> Vec<Arc<Object>> {
        self.slots.iter().filter_map(|s| s.object.clone()).collect()
    }

    /// Number of live objects.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Heap bytes the registry itself uses (slots, free list, list heads).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>()
            + self.free.capacity() * size_of::<u32>()
            + self.lists.capacity() * (size_of::<ListKey>() + size_of::<Head>() + 8)
            + self.owners.capacity() * (size_of::<u32>() + size_of::<Head>() + 8)
    }

    fn links(&mut self, chain: Chain, index: u32) -> &mut Links {
        let slot = &mut self.slots[index as usize];
        match chain {
            Chain::Lru => &mut slot.lru,
            Chain::Owner => &mut slot.by_owner,
        }
    }

    fn head_of(&mut self, chain: Chain, index: u32) -> &mut Head {
        let slot = &self.slots[index as usize];
        match chain {
            Chain::Lru => self.lists.entry(slot.key).or_insert(Head::EMPTY),
            Chain::Owner => self.owners.entry(slot.owner).or_insert(Head::EMPTY),
        }
    }

    fn link_tail(&mut self, chain: Chain, index: u32) {
        let head = self.head_of(chain, index);
        let old_tail = head.tail;
        head.tail = index;
        if head.head == NIL {
            head.head = index;
        }
        head.len += 1;
        if old_tail != NIL {
            self.links(chain, old_tail).next = index;
        }
        *self.links(chain, index) = Links {
            prev: old_tail,
            next: NIL,
        };
    }

    fn unlink(&mut self, chain: Chain, index: u32) {
        let key_is_none =
            matches!(chain, Chain::Lru) && self.slots[index as usize].key == ListKey::None;
        if key_is_none {
            return;
        }
        let Links { prev, next } = *self.links(chain, index);
        if prev != NIL {
            self.links(chain, prev).next = next;
        }
        if next != NIL {
            self.links(chain, next).prev = prev;
        }
        let head = self.head_of(chain, index);
        if head.head == index {
            head.head = next;
        }
        if head.tail == index {
            head.tail = prev;
        }
        head.len -= 1;
        let empty = head.len == 0;
        *self.links(chain, index) = UNLINKED;
        if empty {
            let slot = &self.slots[index as usize];
            match chain {
                Chain::Lru => {
                    let key = slot.key;
                    self.lists.remove(&key);
                }
                Chain::Owner => {
                    let owner = slot.owner;
                    self.owners.remove(&owner);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::OwnerAccount;
    use crate::object::ObjectState;
    use crate::types::{OwnerId, Placement, Priority};

    fn registry_with(n: usize) -> (Registry, Vec<ObjectId>) {
        let owner = Arc::new(OwnerAccount::new(OwnerId(1), "o".into(), None));
        let mut r = Registry::default();
        let ids = (0..n)
            .map(|_| {
                r.insert(1, |id| {
                    Object::new(
                        id,
                        owner.clone(),
                        4096,
                        0,
                        ObjectState::new(Placement::system(), Priority::NORMAL),
                    )
                })
                .unwrap()
                .id
            })
            .collect();
        (r, ids)
    }

    fn order(r: &Registry, key: ListKey) -> Vec<ObjectId> {
        let mut out = Vec::new();
        r.candidates(key, usize::MAX, usize::MAX, |_| true, &mut out);
        out.iter().map(|o| o.id).collect()
    }

    const A: ListKey = ListKey::Evictable {
        region: 0,
        priority: 1,
    };
    const B: ListKey = ListKey::Purgeable {
        owner: 1,
        region: 0,
    };

    #[test]
    fn lists_keep_lru_order_and_move_in_o1() {
        let (mut r, ids) = registry_with(4);
        for id in &ids {
            r.relist(*id, A);
        }
        assert_eq!(order(&r, A), ids);
        r.touch(ids[0]);
        assert_eq!(order(&r, A), vec![ids[1], ids[2], ids[3], ids[0]]);
        r.relist(ids[2], B);
        assert_eq!(order(&r, A), vec![ids[1], ids[3], ids[0]]);
        assert_eq!(order(&r, B), vec![ids[2]]);
        assert_eq!(r.list_len(A), 3);
        r.relist(ids[1], A); // already there: position kept
        assert_eq!(order(&r, A)[0], ids[1]);
        r.relist(ids[2], ListKey::None);
        assert_eq!(r.list_len(B), 0);
        assert!(r
            .lists_where(|k| matches!(k, ListKey::Purgeable { .. }))
            .is_empty());
    }

    #[test]
    fn removal_bumps_generations_and_unlinks_everything() {
        let (mut r, ids) = registry_with(3);
        r.relist(ids[1], A);
        r.remove(ids[1]);
        assert!(r.get(ids[1]).is_none());
        assert_eq!(r.list_len(A), 0);
        assert_eq!(r.live(), 2);
        assert_eq!(r.owner_objects(1).len(), 2);
        // The slot is reused under a new generation; the old id stays dead.
        let owner = Arc::new(OwnerAccount::new(OwnerId(1), "o".into(), None));
        let new = r
            .insert(1, |id| {
                Object::new(
                    id,
                    owner,
                    4096,
                    0,
                    ObjectState::new(Placement::system(), Priority::NORMAL),
                )
            })
            .unwrap();
        assert_eq!(new.id.index(), ids[1].index());
        assert_ne!(new.id, ids[1]);
        assert!(r.get(ids[1]).is_none());
        r.remove(ids[1]); // stale: no effect
        assert_eq!(r.live(), 3);
    }

    #[test]
    fn candidate_walks_are_bounded() {
        let (mut r, ids) = registry_with(10);
        for id in &ids {
            r.relist(*id, A);
        }
        let mut out = Vec::new();
        r.candidates(A, 3, 100, |_| true, &mut out);
        assert_eq!(out.len(), 3);
        out.clear();
        r.candidates(A, 100, 4, |o| o.id.index() % 2 == 0, &mut out);
        assert_eq!(out.len(), 2, "looked at 4, kept the even ones");
    }
}
