//! V1 endpoint tables: typed ids, entries and the registration array.

use core::any::TypeId;
use core::marker::PhantomData;

use crate::record::Registration;
use crate::{Endpoint, LookupError, RegisterError, sys};

/// The V1 id of an endpoint of type `F` (`DRIVER_PROXY_ENDPOINT_FUNCTION_ID`).
///
/// Ids are chosen by the driver and must be unique per extension. The type parameter ties the
/// id to the endpoint's signature, so a lookup by id returns a correctly typed wrapper.
#[derive(Clone, Copy)]
pub struct EndpointId<F: Endpoint> {
    raw: u32,
    _signature: PhantomData<F>,
}

impl<F: Endpoint> EndpointId<F> {
    /// The id `raw` for endpoints of type `F`.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn new(raw: u32) -> Self {
        Self {
            raw,
            _signature: PhantomData,
        }
    }

    /// The numeric id.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn raw(self) -> u32 {
        self.raw
    }
}

impl<F: Endpoint> core::fmt::Debug for EndpointId<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "EndpointId({})", self.raw)
    }
}

/// One endpoint of a V1 table: its id, the function, and `ParameterCount` derived from the
/// function's type.
#[derive(Clone, Copy, Debug)]
pub struct EndpointEntry {
    info: sys::DRIVER_PROXY_ENDPOINT_INFORMATION,
    type_id: TypeId,
    signature: u64,
}

impl EndpointEntry {
    /// An entry registering `endpoint` under `id`.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn new<F: Endpoint>(id: EndpointId<F>, endpoint: F) -> Self {
        let () = F::FITS_SLOTS;
        Self {
            info: sys::DRIVER_PROXY_ENDPOINT_INFORMATION {
                Id: id.raw,
                EndpointFunction: Some(endpoint.erase()),
                ParameterCount: F::ARITY,
            },
            type_id: F::type_id(),
            signature: F::signature(),
        }
    }

    /// The id.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn id(&self) -> u32 {
        self.info.Id
    }

    /// The `ParameterCount` that will be registered.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn parameter_count(&self) -> u32 {
        self.info.ParameterCount
    }
}

/// A V1 registration table of `N` endpoints with distinct ids.
///
/// A table is a value the driver builds in `DriverEntry`: [`crate::HotSwap::register`] copies
/// what the kernel and the endpoint record need, and [`crate::HotSwap::wrapper`] looks an id
/// up in it (where hot-swap is unavailable, the table is where the endpoint itself comes
/// from). It need not outlive `DriverEntry`.
#[derive(Clone, Debug)]
pub struct EndpointTable<const N: usize> {
    entries: [EndpointEntry; N],
}

impl<const N: usize> EndpointTable<N> {
    /// A table of `entries`.
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// [`RegisterError::Empty`] for `N == 0`; [`RegisterError::DuplicateId`] when two entries
    /// share an id.
    pub fn new(entries: [EndpointEntry; N]) -> Result<Self, RegisterError> {
        if N == 0 {
            return Err(RegisterError::Empty);
        }
        for (i, entry) in entries.iter().enumerate() {
            if entries[..i]
                .iter()
                .any(|earlier| earlier.info.Id == entry.info.Id)
            {
                return Err(RegisterError::DuplicateId(entry.info.Id));
            }
        }
        Ok(Self { entries })
    }

    /// The entries, in registration order.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn entries(&self) -> &[EndpointEntry; N] {
        &self.entries
    }

    /// A copy of the `DRIVER_PROXY_ENDPOINT_INFORMATION` array for the kernel, which may write
    /// into it (`[in, out]`); the table itself stays as built.
    pub(crate) fn raw_copy(&self) -> [sys::DRIVER_PROXY_ENDPOINT_INFORMATION; N] {
        core::array::from_fn(|i| self.entries[i].info)
    }

    /// What the endpoint record checks and keeps of each entry.
    pub(crate) fn registrations(&self) -> [Registration; N] {
        core::array::from_fn(|i| {
            let entry = &self.entries[i];
            Registration {
                id: entry.info.Id,
                arity: entry.info.ParameterCount,
                function: entry.info.EndpointFunction,
                address: entry.info.EndpointFunction.map_or(0, |f| f as usize),
                signature: entry.signature,
                type_id: entry.type_id,
            }
        })
    }

    /// The endpoint registered under `id`, checked against its type.
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// [`LookupError::UnknownId`], [`LookupError::TypeMismatch`].
    pub fn endpoint<F: Endpoint>(&self, id: EndpointId<F>) -> Result<F, LookupError> {
        let entry = self.entry_for(id)?;
        let erased = entry
            .info
            .EndpointFunction
            .ok_or(LookupError::UnknownId(id.raw))?;
        // SAFETY: the entry was built by `EndpointEntry::new` from an `F` (its TypeId matched).
        Ok(unsafe { F::unerase(erased) })
    }

    /// The entry for `id`, after checking it was registered with type `F`.
    pub(crate) fn entry_for<F: Endpoint>(
        &self,
        id: EndpointId<F>,
    ) -> Result<&EndpointEntry, LookupError> {
        let entry = self
            .entries
            .iter()
            .find(|e| e.info.Id == id.raw)
            .ok_or(LookupError::UnknownId(id.raw))?;
        if entry.type_id == F::type_id() {
            Ok(entry)
        } else {
            Err(LookupError::TypeMismatch(id.raw))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Handler = extern "system" fn(u32) -> u32;
    type Other = extern "system" fn(u64) -> u32;
    extern "system" fn add_one(x: u32) -> u32 {
        x + 1
    }
    extern "system" fn widen(x: u64) -> u32 {
        u32::try_from(x).unwrap_or(u32::MAX)
    }
    const ADD: EndpointId<Handler> = EndpointId::new(1);
    const WIDEN: EndpointId<Other> = EndpointId::new(2);

    #[test]
    fn parameter_count_is_derived_from_the_endpoint_type() {
        let entry = EndpointEntry::new(ADD, add_one as Handler);
        assert_eq!(entry.parameter_count(), 1);
        let table = EndpointTable::new([entry, EndpointEntry::new(WIDEN, widen as Other)]).unwrap();
        let raw = table.raw_copy();
        assert_eq!((raw[0].Id, raw[0].ParameterCount), (1, 1));
        assert_eq!(
            raw[0].EndpointFunction.map(|f| f as usize),
            Some(add_one as Handler as usize)
        );
    }

    #[test]
    fn duplicate_ids_and_empty_tables_are_rejected_before_the_kernel_sees_them() {
        let twice = EndpointTable::new([
            EndpointEntry::new(ADD, add_one as Handler),
            EndpointEntry::new(EndpointId::<Other>::new(1), widen as Other),
        ]);
        assert_eq!(twice.unwrap_err(), RegisterError::DuplicateId(1));
        assert_eq!(
            EndpointTable::<0>::new([]).unwrap_err(),
            RegisterError::Empty
        );
    }

    #[test]
    fn lookup_by_id_checks_the_signature() {
        let table = EndpointTable::new([EndpointEntry::new(ADD, add_one as Handler)]).unwrap();
        assert_eq!(table.endpoint(ADD).unwrap()(41), 42);
        assert_eq!(
            table.endpoint(EndpointId::<Other>::new(1)).unwrap_err(),
            LookupError::TypeMismatch(1)
        );
        assert_eq!(
            table.endpoint(WIDEN).unwrap_err(),
            LookupError::UnknownId(2)
        );
    }
}
