//! `dana.touch_updated_at()`: the BEFORE UPDATE trigger that keeps `updated_at` honest.
//!
//! It runs for every updated row, so it works on the raw tuples instead of going through
//! pgrx's by-name accessors. When the statement does not SET the timestamp column (PostgreSQL
//! tells a trigger which columns it targets), one byte comparison of the two tuples settles
//! whether anything changed; only a statement that sets the column itself pays for a
//! column-by-column comparison.
//!
//! Attaching it is checked by an event trigger (`sql/timestamps.sql`), so a wrong column type
//! fails at `CREATE TRIGGER`; the checks here catch a column changed or dropped afterwards.

use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode, PgTupleDesc};
use std::ffi::CStr;

#[derive(Debug, thiserror::Error)]
pub enum TouchError {
    #[error("dana.touch_updated_at() must be attached as BEFORE UPDATE ... FOR EACH ROW (trigger \"{0}\")")]
    WrongEvent(String),
    #[error("dana.touch_updated_at(): table \"{table}\" has no column \"{column}\"")]
    NoColumn { table: String, column: String },
    #[error("dana.touch_updated_at(): column \"{column}\" of table \"{table}\" is not timestamptz or timestamp")]
    WrongType { table: String, column: String },
}

impl TouchError {
    /// Reports the error with the SQLSTATE PostgreSQL itself would use.
    fn raise(self) -> ! {
        let code = match self {
            TouchError::WrongEvent(_) => PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            TouchError::NoColumn { .. } => PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            TouchError::WrongType { .. } => PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
        };
        crate::raise(code, self.to_string(), None, None)
    }
}

#[pg_trigger]
fn touch_updated_at<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, TouchError> {
    let data = trigger.trigger_data();
    let event = data.tg_event;
    let row_before_update = event & pg_sys::TRIGGER_EVENT_ROW != 0
        && event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_BEFORE
        && event & pg_sys::TRIGGER_EVENT_OPMASK == pg_sys::TRIGGER_EVENT_UPDATE;
    if !row_before_update {
        TouchError::WrongEvent(trigger.name().unwrap_or("?").to_owned()).raise();
    }

    // SAFETY: PostgreSQL hands a BEFORE UPDATE row trigger valid relation, old and new tuples.
    unsafe {
        let tupdesc = (*data.tg_relation).rd_att;
        let attnum = touched_column(trigger, tupdesc).unwrap_or_else(|e| e.raise());
        let old = data.tg_trigtuple;
        let new = data.tg_newtuple;
        // Columns named in the statement's SET list: when the maintained column is not among
        // them, it is the same in both tuples and a byte comparison settles the question.
        let offset = attnum - pg_sys::FirstLowInvalidHeapAttributeNumber;
        let set_by_statement = pg_sys::bms_is_member(offset, data.tg_updatedcols);
        let changed = if set_by_statement {
            changed_apart_from(old, new, tupdesc, attnum)
        } else {
            !same_bytes(old, new)
        };
        let result = if changed {
            stamp(new, tupdesc, attnum)
        } else {
            new
        };
        Ok(Some(PgHeapTuple::from_heap_tuple(
            PgTupleDesc::from_pg_unchecked(tupdesc),
            result,
        )))
    }
}

/// The 1-based attribute number of the column to maintain, checked to be a timestamp.
unsafe fn touched_column(
    trigger: &PgTrigger<'_>,
    tupdesc: pg_sys::TupleDesc,
) -> Result<i32, TouchError> {
    let tg = trigger.trigger();
    let name: &CStr = if tg.tgnargs > 0 {
        unsafe { CStr::from_ptr(*tg.tgargs) }
    } else {
        c"updated_at"
    };
    let attnum = unsafe { pg_sys::SPI_fnumber(tupdesc, name.as_ptr()) };
    let problem = |wrong_type: bool| {
        let table = trigger.table_name().unwrap_or_default();
        let column = name.to_string_lossy().into_owned();
        if wrong_type {
            TouchError::WrongType { table, column }
        } else {
            TouchError::NoColumn { table, column }
        }
    };
    if attnum <= 0 {
        return Err(problem(false));
    }
    let attr = unsafe { &*(*tupdesc).attrs.as_ptr().add(attnum as usize - 1) };
    if attr.attisdropped {
        return Err(problem(false));
    }
    if attr.atttypid != pg_sys::TIMESTAMPTZOID && attr.atttypid != pg_sys::TIMESTAMPOID {
        return Err(problem(true));
    }
    Ok(attnum)
}

/// True when some column other than `attnum` differs between the two tuples.
unsafe fn changed_apart_from(
    old: pg_sys::HeapTuple,
    new: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
    attnum: i32,
) -> bool {
    unsafe {
        if same_bytes(old, new) {
            return false;
        }
        // The tuples differ. If the maintained column is the same in both, the difference is
        // elsewhere: the row changed.
        let (old_stamp, new_stamp) = (
            get_attr(old, tupdesc, attnum),
            get_attr(new, tupdesc, attnum),
        );
        if old_stamp == new_stamp {
            return true;
        }
        // The statement set the maintained column itself: compare everything else.
        let natts = (*tupdesc).natts as usize;
        (1..=natts as i32)
            .filter(|&n| n != attnum)
            .any(|n| !same_value(old, new, tupdesc, n))
    }
}

/// Byte-for-byte equality of the tuples' data, ignoring transaction status bits (the same test
/// PostgreSQL's `suppress_redundant_updates_trigger` uses).
unsafe fn same_bytes(old: pg_sys::HeapTuple, new: pg_sys::HeapTuple) -> bool {
    unsafe {
        let (o, n) = ((*old).t_data, (*new).t_data);
        let xact_mask = pg_sys::HEAP_XACT_MASK as u16;
        let natts_mask = pg_sys::HEAP_NATTS_MASK as u16;
        if (*old).t_len != (*new).t_len
            || (*o).t_hoff != (*n).t_hoff
            || ((*o).t_infomask2 & natts_mask) != ((*n).t_infomask2 & natts_mask)
            || ((*o).t_infomask & !xact_mask) != ((*n).t_infomask & !xact_mask)
        {
            return false;
        }
        let start = std::mem::offset_of!(pg_sys::HeapTupleHeaderData, t_bits);
        let len = (*old).t_len as usize - start;
        let old_bytes = std::slice::from_raw_parts((o as *const u8).add(start), len);
        let new_bytes = std::slice::from_raw_parts((n as *const u8).add(start), len);
        old_bytes == new_bytes
    }
}

/// The 8-byte timestamp (or None for NULL) of a timestamp column.
unsafe fn get_attr(
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
    attnum: i32,
) -> Option<pg_sys::Datum> {
    let mut is_null = false;
    let datum = unsafe { pg_sys::heap_getattr(tuple, attnum, tupdesc, &mut is_null) };
    (!is_null).then_some(datum)
}

/// Binary equality of one column in two tuples (what `datumIsEqual` does): values stored
/// differently (say, compressed in one tuple only) count as different, which at worst
/// refreshes the timestamp.
unsafe fn same_value(
    old: pg_sys::HeapTuple,
    new: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
    attnum: i32,
) -> bool {
    unsafe {
        let attr = &*(*tupdesc).attrs.as_ptr().add(attnum as usize - 1);
        if attr.attisdropped {
            return true;
        }
        match (
            get_attr(old, tupdesc, attnum),
            get_attr(new, tupdesc, attnum),
        ) {
            (None, None) => true,
            (Some(a), Some(b)) if attr.attbyval => a == b,
            (Some(a), Some(b)) => {
                let (pa, pb) = (a.cast_mut_ptr::<u8>(), b.cast_mut_ptr::<u8>());
                let size = |p: *mut u8| match attr.attlen {
                    -1 => pgrx::varlena::varsize_any(p as *const pg_sys::varlena),
                    -2 => {
                        CStr::from_ptr(p as *const std::ffi::c_char)
                            .to_bytes()
                            .len()
                            + 1
                    }
                    n => n as usize,
                };
                let (la, lb) = (size(pa), size(pb));
                la == lb && std::slice::from_raw_parts(pa, la) == std::slice::from_raw_parts(pb, lb)
            }
            _ => false,
        }
    }
}

/// A copy of `new` whose column `attnum` holds the transaction's start time, as `now()` does.
unsafe fn stamp(
    new: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
    attnum: i32,
) -> pg_sys::HeapTuple {
    unsafe {
        let attr = &*(*tupdesc).attrs.as_ptr().add(attnum as usize - 1);
        let now = pg_sys::GetCurrentTransactionStartTimestamp();
        let mut value = pg_sys::Datum::from(now);
        if attr.atttypid == pg_sys::TIMESTAMPOID {
            value =
                pgrx::direct_function_call_as_datum(pg_sys::timestamptz_timestamp, &[Some(value)])
                    .expect("timestamptz_timestamp returns a value for a non-NULL input");
        }
        let mut column = attnum;
        let mut is_null = false;
        pg_sys::heap_modify_tuple_by_cols(new, tupdesc, 1, &mut column, &mut value, &mut is_null)
    }
}
