//! The endpoint record: which endpoints this driver registered, under which signature, and
//! which image registered them; what makes a typed wrapper lookup sound.
//!
//! The kernel knows an endpoint's id, its wrapper and its `ParameterCount`, nothing of its
//! type. A `Wrapped<F>` handed to safe code promises that every implementation the wrapper
//! will ever forward to has the signature `F`. The record keeps that promise checkable:
//!
//! * it lives in a **driver-object extension** (`IoAllocateDriverObjectExtension` under
//!   [`RECORD_KEY`]), which the I/O manager frees with the driver object, so it outlives every
//!   image of the driver and the next image finds it (`IoGetDriverObjectExtension`);
//! * each V1 entry says which **image** registered the implementation now in force (the
//!   image's token: the address of a `static` of this crate, unique among mapped images) and
//!   that image's `TypeId` of the endpoint type. A `TypeId` is only compared by the image that
//!   wrote it: another compilation's `TypeId`s mean nothing to this one;
//! * within one image, an id keeps the `TypeId` it was first registered with, and an address
//!   handed out by V2 keeps the type it was handed out as. A registration that would change
//!   either is refused before the kernel is called.
//!
//! Across images (a swap to a new version, another compilation) no type can be compared; the
//! contract of hot swap is that an id keeps its signature from one version to the next. The
//! record checks what can be checked (the parameter count and a fingerprint of the type's
//! name, [`crate::Endpoint::signature`]) and lets an image look up only the ids *it*
//! registered, so a new image never gets a wrapper typed by its own idea of an id that still
//! leads into the old image.
//!
//! # Concurrency
//!
//! Lookups run at any IRQL and never wait. Writers (registration and the first V2 lookup of
//! an address) are serialised by a try-lock: a second writer fails at once with a `Busy`
//! error instead of spinning (a registration can block for as long as the drain takes).
//! Entries are only appended; an entry's id, kind and slot never change once published
//! (`len` is stored with `Release` after the entry is written). The fields a registration
//! changes are atomics, except the `TypeId`, which a reader reads only after seeing (with
//! `Acquire`) its own image as the owner: an image writes its `TypeId` into an entry once,
//! before it publishes itself as the owner, and never rewrites it while it is the owner.

use core::any::TypeId;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use crate::sync::{AtomicU32, AtomicU64, AtomicUsize, Ordering, UnsafeCell};

use crate::resolve::StorageRoutines;
use crate::{CreateError, Endpoint, NtStatus, sys};

/// The identification address of the record among the driver object's extensions. It is not
/// canonical on x64 or ARM64 (no object can live there), so it cannot be another client's
/// address; it is the same in every image and every version of this crate that shares the
/// record's layout.
pub(crate) const RECORD_KEY: usize = 0x4450_5258_5245_4331; // "DPRXREC1"

/// The most entries (V1 ids plus V2 addresses handed out) a driver's record holds.
#[cfg(not(loom))]
pub const MAX_ENDPOINTS: usize = 64;
/// Under loom: a small record (loom's atomics are large and every one is modelled).
#[cfg(loom)]
pub const MAX_ENDPOINTS: usize = 4;

const MAGIC: u64 = u64::from_le_bytes(*b"DPrxRec1");
const LAYOUT: u32 = 1;

/// An entry for a V1 id.
const KIND_V1: u32 = 1;
/// An entry for an address handed out by a V2 lookup.
const KIND_V2: u32 = 2;
/// `owner` of an entry no image has a registration in force for.
const NO_OWNER: usize = 0;

/// The calling image's token: the address of a static of this crate, which each image links
/// its own copy of.
fn this_image() -> usize {
    static IMAGE_TOKEN: u8 = 0;
    core::ptr::from_ref(&IMAGE_TOKEN) as usize
}

/// One endpoint of the record.
#[repr(C)]
struct Entry {
    /// The V1 id (0 for a V2 entry). Immutable once published.
    id: AtomicU32,
    /// [`KIND_V1`] or [`KIND_V2`]. Immutable once published.
    kind: AtomicU32,
    /// `ParameterCount` of the registration in force.
    arity: AtomicU32,
    _reserved: u32,
    /// The image whose registration is in force ([`NO_OWNER`]: none). Stored with `Release`
    /// after `type_id`.
    owner: AtomicUsize,
    /// The implementation in force (V1) or the endpoint handed out (V2).
    address: AtomicUsize,
    /// [`Endpoint::signature`] of the owner's endpoint type.
    signature: AtomicU64,
    /// The owner's `TypeId` of the endpoint type; meaningful only to the owner.
    type_id: UnsafeCell<MaybeUninit<TypeId>>,
}

/// The record's header, then [`MAX_ENDPOINTS`] entries.
#[repr(C)]
pub(crate) struct Record {
    magic: AtomicU64,
    layout: AtomicU32,
    entry_size: AtomicU32,
    capacity: AtomicU32,
    len: AtomicU32,
    /// 1 while a writer holds the record.
    writer: AtomicU32,
    entries: [Entry; MAX_ENDPOINTS],
}

// SAFETY: every field is an atomic except `type_id`, whose accesses follow the protocol in the
// module docs (written once by an image before it publishes ownership with Release, read only
// by that image after it observes its ownership with Acquire).
unsafe impl Sync for Record {}
// SAFETY: as above; the record is kernel-owned storage reached from any thread.
unsafe impl Send for Record {}

/// An address that is an endpoint of another image, or of another type, than a V2 lookup asks
/// for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AddressTaken;

/// Why a registration conflicts with the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Conflict {
    /// The id is registered with another signature (this image: another `TypeId`; another
    /// image: another type name).
    Signature(u32),
    /// The id is registered with another parameter count.
    ParameterCount(u32),
    /// The record is full.
    Full,
}

/// What a registration changed in the record, to undo it if the kernel refuses.
#[derive(Clone, Copy)]
pub(crate) struct Saved {
    index: usize,
    owner: usize,
    address: usize,
    arity: u32,
    signature: u64,
    type_id: MaybeUninit<TypeId>,
}

/// One endpoint of a registration, as the record needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Registration {
    pub(crate) id: u32,
    pub(crate) arity: u32,
    /// The endpoint (`None` only in tests of the record, which work with addresses).
    pub(crate) function: sys::PDRIVER_PROXY_ENDPOINT_FUNCTION,
    pub(crate) address: usize,
    pub(crate) signature: u64,
    pub(crate) type_id: TypeId,
}

/// The writer's hold on the record; released on drop.
pub(crate) struct WriteGuard<'a> {
    record: &'a Record,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.record.writer.store(0, Ordering::Release);
    }
}

impl Record {
    /// The driver's record: found with `IoGetDriverObjectExtension`, or allocated and
    /// initialised when `create` and the driver has none.
    ///
    /// # Errors
    /// [`CreateError::IncompatibleRecord`] (a record of another layout, written by an image
    /// built with another version of this crate), [`CreateError::InsufficientResources`],
    /// [`CreateError::Unexpected`]; [`CreateError::RecordMissing`] when `create` is false
    /// and there is none.
    pub(crate) fn of_driver(
        storage: StorageRoutines,
        driver: sys::PDRIVER_OBJECT,
        create: bool,
    ) -> Result<&'static Self, CreateError> {
        // SAFETY: `driver` is a live driver object (caller: from a `DriverObject`); the key is
        // only compared by the I/O manager.
        let existing = unsafe { (storage.get)(driver, RECORD_KEY as sys::PVOID) };
        if let Some(existing) = NonNull::new(existing.cast::<Self>()) {
            // SAFETY: blocks under RECORD_KEY are records (nothing else uses the key), allocated
            // with at least the header's size by an image of this crate, zero-filled, aligned,
            // and alive until the driver object is deleted.
            let record = unsafe { existing.as_ref() };
            return if record.is_compatible() {
                Ok(record)
            } else {
                Err(CreateError::IncompatibleRecord)
            };
        }
        if !create {
            return Err(CreateError::RecordMissing);
        }
        let mut block = core::ptr::null_mut();
        #[allow(clippy::cast_possible_truncation)] // a few KiB
        let size = core::mem::size_of::<Self>() as u32;
        // SAFETY: live driver object; `block` is a valid local.
        let status = NtStatus(unsafe {
            (storage.allocate)(driver, RECORD_KEY as sys::PVOID, size, &raw mut block)
        });
        if !status.is_success() {
            return Err(match status {
                NtStatus::INSUFFICIENT_RESOURCES => CreateError::InsufficientResources,
                other => CreateError::Unexpected(other),
            });
        }
        let record = NonNull::new(block.cast::<Self>()).ok_or(CreateError::Unexpected(status))?;
        // SAFETY: a fresh, zero-filled, suitably aligned (pool blocks are 16-byte aligned)
        // block of the record's size, alive until the driver object is deleted. All-zero is a
        // valid `Record` (atomics and `MaybeUninit`).
        let record = unsafe { record.as_ref() };
        record.layout.store(LAYOUT, Ordering::Relaxed);
        #[allow(clippy::cast_possible_truncation)] // under 100 bytes / 64
        {
            record
                .entry_size
                .store(core::mem::size_of::<Entry>() as u32, Ordering::Relaxed);
            record
                .capacity
                .store(MAX_ENDPOINTS as u32, Ordering::Relaxed);
        }
        record.magic.store(MAGIC, Ordering::Release);
        Ok(record)
    }

    /// An initialised, empty record by value (the kernel's zero-filled block, for the loom
    /// models, whose atomics cannot be made from zeroed memory).
    #[cfg(all(loom, test))]
    pub(crate) fn new_for_model() -> Self {
        let entry = || Entry {
            id: AtomicU32::new(0),
            kind: AtomicU32::new(0),
            arity: AtomicU32::new(0),
            _reserved: 0,
            owner: AtomicUsize::new(NO_OWNER),
            address: AtomicUsize::new(0),
            signature: AtomicU64::new(0),
            type_id: UnsafeCell::new(MaybeUninit::uninit()),
        };
        #[allow(clippy::cast_possible_truncation)] // small constants
        Self {
            magic: AtomicU64::new(MAGIC),
            layout: AtomicU32::new(LAYOUT),
            entry_size: AtomicU32::new(core::mem::size_of::<Entry>() as u32),
            capacity: AtomicU32::new(MAX_ENDPOINTS as u32),
            len: AtomicU32::new(0),
            writer: AtomicU32::new(0),
            entries: core::array::from_fn(|_| entry()),
        }
    }

    fn is_compatible(&self) -> bool {
        self.magic.load(Ordering::Acquire) == MAGIC
            && self.layout.load(Ordering::Relaxed) == LAYOUT
            && self.entry_size.load(Ordering::Relaxed) as usize == core::mem::size_of::<Entry>()
            && self.capacity.load(Ordering::Relaxed) as usize == MAX_ENDPOINTS
    }

    /// The published entries.
    fn published(&self) -> &[Entry] {
        let len = (self.len.load(Ordering::Acquire) as usize).min(MAX_ENDPOINTS);
        &self.entries[..len]
    }

    fn find_v1(&self, id: u32) -> Option<(usize, &Entry)> {
        self.published().iter().enumerate().find(|(_, e)| {
            e.kind.load(Ordering::Relaxed) == KIND_V1 && e.id.load(Ordering::Relaxed) == id
        })
    }

    /// Whether `entry` is owned by this image with the type `type_id`.
    fn owned_as(entry: &Entry, type_id: TypeId) -> bool {
        if entry.owner.load(Ordering::Acquire) != this_image() {
            return false;
        }
        entry.type_id.with(|stored| {
            // SAFETY: this image owns the entry (observed with Acquire), so it wrote `type_id`
            // before publishing itself and never rewrites it while it owns the entry.
            unsafe { (*stored).assume_init_read() == type_id }
        })
    }

    /// A V1 lookup: `id` must be registered by this image as `F`.
    pub(crate) fn check_lookup<F: Endpoint>(&self, id: u32) -> Result<(), crate::LookupError> {
        let (_, entry) = self
            .find_v1(id)
            .ok_or(crate::LookupError::NotRegistered(id))?;
        match entry.owner.load(Ordering::Acquire) {
            NO_OWNER => Err(crate::LookupError::NotRegistered(id)),
            owner if owner != this_image() => Err(crate::LookupError::RegisteredByAnotherImage(id)),
            _ if Self::owned_as(entry, F::type_id()) => Ok(()),
            _ => Err(crate::LookupError::TypeMismatch(id)),
        }
    }

    /// What a V2 lookup of `address` as an `F` may do: `Ok(Some(id))` when the address is the
    /// implementation in force of V1 ids registered by this image as `F` (look the wrapper up
    /// by that id), `Ok(None)` when the record knows nothing of it or knows it as a V2 endpoint
    /// handed out as `F`; an error when any entry at that address belongs to another image or
    /// type.
    pub(crate) fn check_wrap<F: Endpoint>(
        &self,
        address: usize,
    ) -> Result<Option<u32>, AddressTaken> {
        let mut by_id = None;
        for entry in self.published() {
            if entry.address.load(Ordering::Acquire) != address {
                continue;
            }
            if entry.owner.load(Ordering::Acquire) == NO_OWNER {
                continue;
            }
            if !Self::owned_as(entry, F::type_id()) {
                return Err(AddressTaken);
            }
            if entry.kind.load(Ordering::Relaxed) == KIND_V1 && by_id.is_none() {
                by_id = Some(entry.id.load(Ordering::Relaxed));
            }
        }
        Ok(by_id)
    }

    /// Whether a V2 handout of `address` as `F` is already recorded.
    pub(crate) fn has_v2<F: Endpoint>(&self, address: usize) -> bool {
        self.published().iter().any(|e| {
            e.kind.load(Ordering::Relaxed) == KIND_V2
                && e.address.load(Ordering::Acquire) == address
                && Self::owned_as(e, F::type_id())
        })
    }

    /// Takes the record for writing, or `None` when another writer holds it.
    pub(crate) fn try_write(&self) -> Option<WriteGuard<'_>> {
        self.writer
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| WriteGuard { record: self })
    }

    /// Appends an entry (writer only).
    fn append(
        &self,
        _guard: &WriteGuard<'_>,
        kind: u32,
        endpoint: &Registration,
    ) -> Result<usize, Conflict> {
        let index = self.len.load(Ordering::Relaxed) as usize;
        let entry = self.entries.get(index).ok_or(Conflict::Full)?;
        entry.id.store(endpoint.id, Ordering::Relaxed);
        entry.kind.store(kind, Ordering::Relaxed);
        Self::take_over(entry, endpoint);
        #[allow(clippy::cast_possible_truncation)] // < MAX_ENDPOINTS
        self.len.store(index as u32 + 1, Ordering::Release);
        Ok(index)
    }

    /// Makes this image the owner of `entry` with `endpoint` (writer only).
    fn take_over(entry: &Entry, endpoint: &Registration) {
        entry.arity.store(endpoint.arity, Ordering::Relaxed);
        entry.signature.store(endpoint.signature, Ordering::Relaxed);
        entry.address.store(endpoint.address, Ordering::Release);
        if entry.owner.load(Ordering::Relaxed) != this_image() {
            entry.type_id.with_mut(|stored| {
                // SAFETY: the writer holds the record and this image does not own the entry,
                // so no reader of this image reads `type_id` (they check ownership first), and
                // readers of other images do not run any more (module docs).
                unsafe { (*stored).write(endpoint.type_id) };
            });
            entry.owner.store(this_image(), Ordering::Release);
        }
    }

    /// Records a V2 handout of `address` as `F` (writer only).
    pub(crate) fn record_v2<F: Endpoint>(
        &self,
        guard: &WriteGuard<'_>,
        address: usize,
    ) -> Result<(), Conflict> {
        if self.has_v2::<F>(address) {
            return Ok(());
        }
        self.append(
            guard,
            KIND_V2,
            &Registration {
                id: 0,
                arity: F::ARITY,
                function: None,
                address,
                signature: F::signature(),
                type_id: F::type_id(),
            },
        )
        .map(drop)
    }

    /// Checks a registration against the record (writer only): what [`Record::commit`] will
    /// then apply.
    pub(crate) fn check_registration(
        &self,
        _guard: &WriteGuard<'_>,
        endpoints: &[Registration],
    ) -> Result<(), Conflict> {
        let mut new_ids = 0;
        for (i, endpoint) in endpoints.iter().enumerate() {
            // One address, one type, within the registration too.
            if endpoints.iter().take(i).any(|earlier| {
                earlier.address == endpoint.address && earlier.type_id != endpoint.type_id
            }) {
                return Err(Conflict::Signature(endpoint.id));
            }
            match self.find_v1(endpoint.id) {
                Some((_, entry)) => {
                    let owner = entry.owner.load(Ordering::Acquire);
                    if owner != NO_OWNER && entry.arity.load(Ordering::Relaxed) != endpoint.arity {
                        return Err(Conflict::ParameterCount(endpoint.id));
                    }
                    let same = if owner == this_image() {
                        Self::owned_as(entry, endpoint.type_id)
                    } else {
                        owner == NO_OWNER
                            || entry.signature.load(Ordering::Relaxed) == endpoint.signature
                    };
                    if !same {
                        return Err(Conflict::Signature(endpoint.id));
                    }
                }
                None => new_ids += 1,
            }
            // Every other endpoint at this address must be this image's, of this type.
            for entry in self.published() {
                let is_this_id = entry.kind.load(Ordering::Relaxed) == KIND_V1
                    && entry.id.load(Ordering::Relaxed) == endpoint.id;
                if is_this_id
                    || entry.address.load(Ordering::Acquire) != endpoint.address
                    || entry.owner.load(Ordering::Acquire) == NO_OWNER
                {
                    continue;
                }
                if !Self::owned_as(entry, endpoint.type_id) {
                    return Err(Conflict::Signature(endpoint.id));
                }
            }
        }
        if self.len.load(Ordering::Relaxed) as usize + new_ids > MAX_ENDPOINTS {
            return Err(Conflict::Full);
        }
        Ok(())
    }

    /// Applies a checked registration (writer only), returning what it changed so that
    /// [`Record::restore`] can undo it. Idempotent: committing the same registration twice
    /// changes nothing the second time.
    pub(crate) fn commit<const N: usize>(
        &self,
        guard: &WriteGuard<'_>,
        endpoints: &[Registration; N],
    ) -> [Option<Saved>; N] {
        endpoints.each_ref().map(|endpoint| {
            if let Some((index, entry)) = self.find_v1(endpoint.id) {
                let saved = Saved {
                    index,
                    owner: entry.owner.load(Ordering::Relaxed),
                    address: entry.address.load(Ordering::Relaxed),
                    arity: entry.arity.load(Ordering::Relaxed),
                    signature: entry.signature.load(Ordering::Relaxed),
                    type_id: entry.type_id.with(|stored| {
                        // SAFETY: a plain copy of the bytes (possibly uninitialised), restored as
                        // they were; the writer holds the record.
                        unsafe { stored.read() }
                    }),
                };
                Self::take_over(entry, endpoint);
                Some(saved)
            } else {
                // Checked: there is room. An appended entry is undone by clearing its owner.
                self.append(guard, KIND_V1, endpoint)
                    .ok()
                    .map(|index| Saved {
                        index,
                        owner: NO_OWNER,
                        address: 0,
                        arity: 0,
                        signature: 0,
                        type_id: MaybeUninit::uninit(),
                    })
            }
        })
    }

    /// Undoes [`Record::commit`] after the kernel refused the registration (writer only), for
    /// every endpoint `i` of the registration for which `in_force(i)` is false: a kernel whose
    /// rollback failed keeps some new implementations, and the record must say what the
    /// wrappers really forward to.
    pub(crate) fn restore<const N: usize>(
        &self,
        _guard: &WriteGuard<'_>,
        saved: &[Option<Saved>; N],
        in_force: impl Fn(usize) -> bool,
    ) {
        let undone = saved
            .iter()
            .enumerate()
            .rev()
            .filter(|(i, _)| !in_force(*i))
            .filter_map(|(_, saved)| saved.as_ref());
        for saved in undone {
            let Some(entry) = self.entries.get(saved.index) else {
                continue;
            };
            // The owner goes first: from here on no reader of this image reads `type_id`.
            entry.owner.store(NO_OWNER, Ordering::Release);
            entry.arity.store(saved.arity, Ordering::Relaxed);
            entry.signature.store(saved.signature, Ordering::Relaxed);
            entry.address.store(saved.address, Ordering::Release);
            entry.type_id.with_mut(|stored| {
                // SAFETY: no image reads `type_id` of an entry without an owner; the bytes are
                // the ones the previous owner wrote.
                unsafe { stored.write(saved.type_id) };
            });
            entry.owner.store(saved.owner, Ordering::Release);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use super::*;
    use crate::LookupError;
    use std::boxed::Box;

    type F = extern "system" fn(u64) -> u64;
    type G = extern "system" fn(i64) -> u64;
    type Unsafe = unsafe extern "system" fn(u64) -> u64;
    type Two = extern "system" fn(u64, u64) -> u64;

    /// A zero-filled record, as `IoAllocateDriverObjectExtension` gives it, initialised.
    fn record() -> Box<Record> {
        let layout = std::alloc::Layout::new::<Record>();
        // SAFETY: nonzero size; all-zero is a valid Record (atomics and MaybeUninit); the Box
        // takes the allocation with the same layout (hence the alignment).
        #[allow(clippy::cast_ptr_alignment)]
        let record = unsafe { Box::from_raw(std::alloc::alloc_zeroed(layout).cast::<Record>()) };
        record.magic.store(MAGIC, Ordering::Relaxed);
        record.layout.store(LAYOUT, Ordering::Relaxed);
        #[allow(clippy::cast_possible_truncation)]
        record
            .entry_size
            .store(core::mem::size_of::<Entry>() as u32, Ordering::Relaxed);
        #[allow(clippy::cast_possible_truncation)]
        record
            .capacity
            .store(MAX_ENDPOINTS as u32, Ordering::Relaxed);
        record
    }

    fn endpoint<E: Endpoint>(id: u32, address: usize) -> Registration {
        Registration {
            id,
            arity: E::ARITY,
            function: None,
            address,
            signature: E::signature(),
            type_id: E::type_id(),
        }
    }

    fn register<const N: usize>(
        record: &Record,
        endpoints: [Registration; N],
    ) -> Result<(), Conflict> {
        let guard = record.try_write().expect("no other writer");
        record.check_registration(&guard, &endpoints)?;
        record.commit(&guard, &endpoints);
        Ok(())
    }

    /// Makes every entry look as if another image (another compilation) had registered it.
    fn hand_to_another_image(record: &Record, type_id_of_that_image: TypeId) {
        for entry in record.published() {
            entry.owner.store(0xDEAD_0000, Ordering::Release);
            entry.type_id.with_mut(|stored| {
                // SAFETY: test-only: no reader runs concurrently.
                unsafe { (*stored).write(type_id_of_that_image) };
            });
        }
    }

    #[test]
    fn a_lookup_succeeds_only_for_an_id_this_image_registered_with_that_type() {
        let record = record();
        register(&record, [endpoint::<F>(9, 0x1000)]).unwrap();
        assert_eq!(record.check_lookup::<F>(9), Ok(()));
        assert_eq!(
            record.check_lookup::<G>(9),
            Err(LookupError::TypeMismatch(9))
        );
        assert_eq!(
            record.check_lookup::<Unsafe>(9),
            Err(LookupError::TypeMismatch(9)),
            "a safe fn type is not its unsafe twin"
        );
        assert_eq!(
            record.check_lookup::<F>(10),
            Err(LookupError::NotRegistered(10))
        );
    }

    #[test]
    fn an_id_keeps_its_type_within_an_image() {
        let record = record();
        register(&record, [endpoint::<F>(9, 0x1000)]).unwrap();
        // Same type, new implementation: allowed (this is the V1 swap).
        register(&record, [endpoint::<F>(9, 0x2000)]).unwrap();
        // Same arity, other type: refused, nothing changed.
        assert_eq!(
            register(&record, [endpoint::<G>(9, 0x3000)]),
            Err(Conflict::Signature(9))
        );
        assert_eq!(
            register(&record, [endpoint::<Unsafe>(9, 0x3000)]),
            Err(Conflict::Signature(9))
        );
        assert_eq!(
            register(&record, [endpoint::<Two>(9, 0x3000)]),
            Err(Conflict::ParameterCount(9))
        );
        assert_eq!(record.check_lookup::<F>(9), Ok(()));
        assert_eq!(
            record.published()[0].address.load(Ordering::Relaxed),
            0x2000
        );
    }

    #[test]
    fn a_new_image_looks_up_only_the_ids_it_registered_itself() {
        let record = record();
        register(
            &record,
            [endpoint::<F>(1, 0x1000), endpoint::<F>(2, 0x1100)],
        )
        .unwrap();
        // Another compilation whose TypeId of its own id-1 type happens to equal ours.
        hand_to_another_image(&record, TypeId::of::<F>());
        assert_eq!(
            record.check_lookup::<F>(1),
            Err(LookupError::RegisteredByAnotherImage(1)),
            "a TypeId written by another image is never compared"
        );
        // This image takes id 1 over (same type name): then it may look id 1 up, not id 2.
        register(&record, [endpoint::<F>(1, 0x5000)]).unwrap();
        assert_eq!(record.check_lookup::<F>(1), Ok(()));
        assert_eq!(
            record.check_lookup::<F>(2),
            Err(LookupError::RegisteredByAnotherImage(2))
        );
    }

    #[test]
    fn a_new_image_cannot_take_an_id_over_with_another_type_name_or_arity() {
        let record = record();
        register(&record, [endpoint::<F>(1, 0x1000)]).unwrap();
        hand_to_another_image(&record, TypeId::of::<u8>());
        assert_eq!(
            register(&record, [endpoint::<G>(1, 0x5000)]),
            Err(Conflict::Signature(1))
        );
        assert_eq!(
            register(&record, [endpoint::<Two>(1, 0x5000)]),
            Err(Conflict::ParameterCount(1))
        );
        assert_eq!(
            record.check_lookup::<G>(1),
            Err(LookupError::RegisteredByAnotherImage(1))
        );
    }

    #[test]
    fn a_refused_registration_is_undone_entry_by_entry() {
        let record = record();
        register(&record, [endpoint::<F>(1, 0x1000)]).unwrap();
        let guard = record.try_write().unwrap();
        let endpoints = [endpoint::<F>(1, 0x2000), endpoint::<G>(2, 0x2100)];
        record.check_registration(&guard, &endpoints).unwrap();
        let saved = record.commit(&guard, &endpoints);
        assert_eq!(record.check_lookup::<G>(2), Ok(()));
        record.restore(&guard, &saved, |_| false);
        drop(guard);
        assert_eq!(record.check_lookup::<F>(1), Ok(()));
        assert_eq!(
            record.published()[0].address.load(Ordering::Relaxed),
            0x1000
        );
        assert_eq!(
            record.check_lookup::<G>(2),
            Err(LookupError::NotRegistered(2))
        );
        // The undone id may be registered again later, with any type.
        register(&record, [endpoint::<Two>(2, 0x3000)]).unwrap();
        assert_eq!(record.check_lookup::<Two>(2), Ok(()));
    }

    #[test]
    fn an_address_keeps_the_type_it_was_handed_out_as() {
        let record = record();
        // V1: the same code registered under two ids must have one type.
        assert_eq!(
            register(
                &record,
                [endpoint::<F>(1, 0x1000), endpoint::<Unsafe>(2, 0x1000)]
            ),
            Err(Conflict::Signature(2))
        );
        register(&record, [endpoint::<F>(1, 0x1000)]).unwrap();
        assert_eq!(record.check_wrap::<F>(0x1000), Ok(Some(1)));
        assert_eq!(record.check_wrap::<Unsafe>(0x1000), Err(AddressTaken));
        // V2: an address handed out as F cannot be registered as another type later.
        let guard = record.try_write().unwrap();
        assert_eq!(record.check_wrap::<F>(0x7000), Ok(None));
        record.record_v2::<F>(&guard, 0x7000).unwrap();
        drop(guard);
        assert!(record.has_v2::<F>(0x7000));
        assert_eq!(record.check_wrap::<G>(0x7000), Err(AddressTaken));
        assert_eq!(
            register(&record, [endpoint::<G>(3, 0x7000)]),
            Err(Conflict::Signature(3))
        );
        register(&record, [endpoint::<F>(3, 0x7000)]).unwrap();
    }

    #[test]
    fn one_writer_at_a_time_and_a_full_record_refuses_new_ids() {
        let record = record();
        let guard = record.try_write().unwrap();
        assert!(
            record.try_write().is_none(),
            "a second writer is refused, not queued"
        );
        drop(guard);
        assert!(record.try_write().is_some());
        for id in 0..u32::try_from(MAX_ENDPOINTS).unwrap() {
            register(&record, [endpoint::<F>(id, 0x1000 + id as usize * 16)]).unwrap();
        }
        let full = u32::try_from(MAX_ENDPOINTS).unwrap();
        assert_eq!(
            register(&record, [endpoint::<F>(full, 0x9000)]),
            Err(Conflict::Full)
        );
        // Existing ids still re-register.
        register(&record, [endpoint::<F>(0, 0x9100)]).unwrap();
    }

    #[test]
    fn a_record_of_another_layout_is_not_compatible() {
        let record = record();
        assert!(record.is_compatible());
        record.layout.store(LAYOUT + 1, Ordering::Relaxed);
        assert!(!record.is_compatible());
        record.layout.store(LAYOUT, Ordering::Relaxed);
        record.magic.store(0, Ordering::Relaxed);
        assert!(!record.is_compatible());
    }
}

/// Loom models of the record's protocol (`cargo xtask test` runs them with
/// `RUSTFLAGS="--cfg loom"`): a lookup concurrent with the registration that publishes or takes
/// over its id never reads a `TypeId` being written (loom's `UnsafeCell` checks every access)
/// and sees either the old state or the new one, never a mix; writers exclude each other.
#[cfg(all(test, loom))]
mod loom_models {
    extern crate std;
    use super::*;
    use crate::LookupError;
    use loom::sync::Arc;

    type F = extern "system" fn(u64) -> u64;

    fn endpoint(id: u32, address: usize) -> Registration {
        Registration {
            id,
            arity: 1,
            function: None,
            address,
            signature: F::signature(),
            type_id: F::type_id(),
        }
    }

    fn register(record: &Record, endpoints: [Registration; 1]) -> bool {
        let Some(guard) = record.try_write() else {
            return false;
        };
        if record.check_registration(&guard, &endpoints).is_err() {
            return false;
        }
        record.commit(&guard, &endpoints);
        true
    }

    /// Runs `writer` and `reader` on two spawned threads (loom's exploration is complete for
    /// spawned threads; with the main thread as one side it can miss orders) and returns what
    /// the reader saw.
    fn race<R: Send + 'static>(
        record: &Arc<Record>,
        writer: impl FnOnce(&Record) + Send + 'static,
        reader: impl FnOnce(&Record) -> R + Send + 'static,
    ) -> R {
        let (for_writer, for_reader) = (record.clone(), record.clone());
        let writer = loom::thread::spawn(move || writer(&for_writer));
        let reader = loom::thread::spawn(move || reader(&for_reader));
        writer.join().unwrap();
        reader.join().unwrap()
    }

    #[test]
    fn loom_a_lookup_during_the_first_registration_sees_nothing_or_the_whole_entry() {
        loom::model(|| {
            let record = Arc::new(Record::new_for_model());
            let seen = race(
                &record,
                |record| assert!(register(record, [endpoint(1, 0x1000)])),
                |record| record.check_lookup::<F>(1),
            );
            assert!(
                matches!(seen, Ok(()) | Err(LookupError::NotRegistered(1))),
                "{seen:?}"
            );
            assert_eq!(record.check_lookup::<F>(1), Ok(()));
        });
    }

    #[test]
    fn loom_a_lookup_during_a_takeover_from_another_image_never_mixes_the_two() {
        loom::model(|| {
            let record = Arc::new(Record::new_for_model());
            assert!(register(&record, [endpoint(1, 0x1000)]));
            // Another image (another compilation) owns the id now.
            record.published()[0]
                .owner
                .store(0xDEAD_0000, Ordering::Release);
            let seen = race(
                &record,
                |record| assert!(register(record, [endpoint(1, 0x2000)])),
                |record| record.check_lookup::<F>(1),
            );
            assert!(
                matches!(seen, Ok(()) | Err(LookupError::RegisteredByAnotherImage(1))),
                "{seen:?}"
            );
            assert_eq!(record.check_lookup::<F>(1), Ok(()));
        });
    }

    #[test]
    fn loom_two_writers_never_hold_the_record_at_once() {
        loom::model(|| {
            let record = Arc::new(Record::new_for_model());
            let (a, b) = (record.clone(), record.clone());
            let first = loom::thread::spawn(move || register(&a, [endpoint(1, 0x1000)]));
            let second = loom::thread::spawn(move || register(&b, [endpoint(2, 0x2000)]));
            let (first, second) = (first.join().unwrap(), second.join().unwrap());
            assert_eq!(
                record.published().len(),
                usize::from(first) + usize::from(second)
            );
            assert!(first || second, "at least one writer got the record");
        });
    }
}
