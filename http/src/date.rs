//! The `Date` header value (IMF-fixdate), formatted at most once per second
//! per thread.

use std::cell::Cell;

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const DATE_LEN: usize = 29;

thread_local! {
    static CACHE: Cell<(u64, [u8; DATE_LEN])> = const { Cell::new((u64::MAX, [0; DATE_LEN])) };
}

/// The current time as an HTTP date, cached per second per thread (read
/// from the coarse real-time clock: no TSC read on the hot path).
///
/// ```
/// let d = stead_http::http_date();
/// assert!(std::str::from_utf8(&d).unwrap().ends_with(" GMT"));
/// ```
pub fn http_date() -> [u8; DATE_LEN] {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    CACHE.with(|c| {
        let (at, bytes) = c.get();
        if at == secs {
            return bytes;
        }
        let bytes = format_http_date(secs);
        c.set((secs, bytes));
        bytes
    })
}

/// Format seconds since the Unix epoch as an IMF-fixdate.
///
/// ```
/// let d = stead_http::format_http_date(784_111_777);
/// assert_eq!(&d, b"Sun, 06 Nov 1994 08:49:37 GMT");
/// ```
pub fn format_http_date(secs: u64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let weekday = ((days + 4) % 7) as usize; // 1970-01-01 was a Thursday
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + u64::from(month <= 2)).min(9999);

    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[weekday]);
    two(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    two(&mut out[12..14], year / 100);
    two(&mut out[14..16], year % 100);
    two(&mut out[17..19], rem / 3600);
    two(&mut out[20..22], rem / 60 % 60);
    two(&mut out[23..25], rem % 60);
    out
}

fn two(dst: &mut [u8], v: u64) {
    dst[0] = b'0' + (v / 10 % 10) as u8;
    dst[1] = b'0' + (v % 10) as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(&format_http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            &format_http_date(951_782_400),
            b"Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            &format_http_date(1_709_164_799),
            b"Wed, 28 Feb 2024 23:59:59 GMT"
        );
        assert_eq!(
            &format_http_date(4_102_444_800),
            b"Fri, 01 Jan 2100 00:00:00 GMT"
        );
    }

    #[test]
    fn cached_date_is_now() {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let d = http_date();
        assert!(
            (secs - 1..=secs + 1).any(|s| format_http_date(s) == d),
            "{}",
            String::from_utf8_lossy(&d)
        );
    }
}
