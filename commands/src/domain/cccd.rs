//! The 12-digit citizen identity number (CCCD), checked structurally (see
//! `shared/data/CCCD.md`): there is no check digit, so the validator checks the length, the
//! province code of birth registration, and the century/sex digit against a plausible
//! birth year.

use serde::{Deserialize, Serialize};
use std::fmt;

/// CCCD province codes (digits 1–3) of the 63 provinces, from `provinces.csv` (`cccd_code`).
pub const PROVINCE_CODES: [(&str, &str); 63] = [
    ("001", "Hà Nội"),
    ("002", "Hà Giang"),
    ("004", "Cao Bằng"),
    ("006", "Bắc Kạn"),
    ("008", "Tuyên Quang"),
    ("010", "Lào Cai"),
    ("011", "Điện Biên"),
    ("012", "Lai Châu"),
    ("014", "Sơn La"),
    ("015", "Yên Bái"),
    ("017", "Hòa Bình"),
    ("019", "Thái Nguyên"),
    ("020", "Lạng Sơn"),
    ("022", "Quảng Ninh"),
    ("024", "Bắc Giang"),
    ("025", "Phú Thọ"),
    ("026", "Vĩnh Phúc"),
    ("027", "Bắc Ninh"),
    ("030", "Hải Dương"),
    ("031", "Hải Phòng"),
    ("033", "Hưng Yên"),
    ("034", "Thái Bình"),
    ("035", "Hà Nam"),
    ("036", "Nam Định"),
    ("037", "Ninh Bình"),
    ("038", "Thanh Hóa"),
    ("040", "Nghệ An"),
    ("042", "Hà Tĩnh"),
    ("044", "Quảng Bình"),
    ("045", "Quảng Trị"),
    ("046", "Thừa Thiên Huế"),
    ("048", "Đà Nẵng"),
    ("049", "Quảng Nam"),
    ("051", "Quảng Ngãi"),
    ("052", "Bình Định"),
    ("054", "Phú Yên"),
    ("056", "Khánh Hòa"),
    ("058", "Ninh Thuận"),
    ("060", "Bình Thuận"),
    ("062", "Kon Tum"),
    ("064", "Gia Lai"),
    ("066", "Đắk Lắk"),
    ("067", "Đắk Nông"),
    ("068", "Lâm Đồng"),
    ("070", "Bình Phước"),
    ("072", "Tây Ninh"),
    ("074", "Bình Dương"),
    ("075", "Đồng Nai"),
    ("077", "Bà Rịa - Vũng Tàu"),
    ("079", "Hồ Chí Minh"),
    ("080", "Long An"),
    ("082", "Tiền Giang"),
    ("083", "Bến Tre"),
    ("084", "Trà Vinh"),
    ("086", "Vĩnh Long"),
    ("087", "Đồng Tháp"),
    ("089", "An Giang"),
    ("091", "Kiên Giang"),
    ("092", "Cần Thơ"),
    ("093", "Hậu Giang"),
    ("094", "Sóc Trăng"),
    ("095", "Bạc Liêu"),
    ("096", "Cà Mau"),
];

/// A structurally valid CCCD. Construct with [`Cccd::parse`].
///
/// Stored (postcard) as its 12 ASCII digits, the form every event since v1 has; in
/// human-readable formats (the API's JSON, exports) as the 12-digit string people read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
#[schema(value_type = String, example = "046196000400")]
pub struct Cccd([u8; 12]);

impl Serialize for Cccd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.serialize_str(self.as_str()) } else { s.serialize_newtype_struct("Cccd", &self.0) }
    }
}

impl<'de> Deserialize<'de> for Cccd {
    /// Checks the digits only: the birth-year check needs the registry's year, which a
    /// stored event was already checked against when it was decided.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let digits = if d.is_human_readable() {
            let s = String::deserialize(d)?;
            twelve_digits(&s)
        } else {
            #[derive(Deserialize)]
            #[serde(rename = "Cccd")]
            struct Stored([u8; 12]);
            let stored = Stored::deserialize(d)?.0;
            twelve_digits_in(&stored, || stored.len())
        };
        digits.map(Self).map_err(serde::de::Error::custom)
    }
}

/// The structural part of every CCCD check: exactly 12 ASCII digits.
fn twelve_digits(s: &str) -> Result<[u8; 12], CccdError> {
    twelve_digits_in(s.as_bytes(), || s.chars().count())
}

/// `chars` counts what the user typed, for the error: bytes are not characters.
fn twelve_digits_in(bytes: &[u8], chars: impl FnOnce() -> usize) -> Result<[u8; 12], CccdError> {
    let digits: [u8; 12] = bytes.try_into().map_err(|_| CccdError::Length(chars()))?;
    match digits.iter().position(|b| !b.is_ascii_digit()) {
        Some(position) => Err(CccdError::NotDigit { position: position + 1 }),
        None => Ok(digits),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Male,
    Female,
}

/// Which part of an identity number is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CccdError {
    #[error("a CCCD has 12 digits, got {0} characters")]
    Length(usize),
    #[error("a CCCD has only digits 0-9; character {position} is not a digit")]
    NotDigit { position: usize },
    #[error("digits 1-3 ({0}) are not the code of any province")]
    UnknownProvince(String),
    #[error("digit 4 (century and sex) is {digit}: that means born {from}-{to}, which no living citizen is")]
    Century { digit: u8, from: u16, to: u16 },
}

impl Cccd {
    /// Parses and checks a CCCD. `current_year` bounds the birth year (no one born in the
    /// future): the caller hands it in, the domain reads no clock.
    pub fn parse(s: &str, current_year: u16) -> Result<Self, CccdError> {
        let digits = twelve_digits(s)?;
        let province = &s[..3];
        if !PROVINCE_CODES.iter().any(|(code, _)| *code == province) {
            return Err(CccdError::UnknownProvince(province.to_string()));
        }
        let cccd = Self(digits);
        let birth_year = cccd.birth_year();
        if birth_year > current_year || birth_year + 130 < current_year {
            let from = cccd.century_start();
            return Err(CccdError::Century { digit: digits[3] - b'0', from, to: from + 99 });
        }
        Ok(cccd)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("only ASCII digits are stored")
    }

    /// The province where the birth was registered (not where the citizen lives).
    pub fn province_code(&self) -> &str {
        &self.as_str()[..3]
    }

    pub fn sex(&self) -> Sex {
        if (self.0[3] - b'0').is_multiple_of(2) { Sex::Male } else { Sex::Female }
    }

    pub fn birth_year(&self) -> u16 {
        self.century_start() + u16::from(self.0[4] - b'0') * 10 + u16::from(self.0[5] - b'0')
    }

    /// The fourth digit names the century of birth (and the sex): 0/1 → 1900s, 2/3 → 2000s…
    fn century_start(&self) -> u16 {
        1900 + 100 * u16::from((self.0[3] - b'0') / 2)
    }
}

impl fmt::Display for Cccd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_examples_of_the_reference() {
        let c = Cccd::parse("038303000001", 2023).unwrap();
        assert_eq!((c.province_code(), c.sex(), c.birth_year()), ("038", Sex::Female, 2003));
        let c = Cccd::parse("033085123456", 2023).unwrap();
        assert_eq!((c.sex(), c.birth_year()), (Sex::Male, 1985));
        assert_eq!(Cccd::parse("046196000000", 2023).unwrap().birth_year(), 1996);
    }

    #[test]
    fn says_which_part_is_wrong() {
        assert_eq!(Cccd::parse("0461960000", 2023), Err(CccdError::Length(10)));
        assert_eq!(Cccd::parse("04619600000x", 2023), Err(CccdError::NotDigit { position: 12 }));
        assert_eq!(Cccd::parse("003196000000", 2023), Err(CccdError::UnknownProvince("003".into())));
        assert_eq!(Cccd::parse("046396000000", 2023), Err(CccdError::Century { digit: 3, from: 2000, to: 2099 }));
        assert_eq!(Cccd::parse("046496000000", 2023), Err(CccdError::Century { digit: 4, from: 2100, to: 2199 }));
        assert!(Cccd::parse("０46196000000", 2023).is_err(), "non-ASCII digits are refused, not mis-sliced");
    }

    #[test]
    fn reads_as_a_string_in_json_and_keeps_its_stored_bytes() {
        let c = Cccd::parse("046196000400", 2023).unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"046196000400\"");
        assert_eq!(serde_json::from_str::<Cccd>("\"046196000400\"").unwrap(), c);
        assert!(serde_json::from_str::<Cccd>("\"04619600040x\"").is_err());
        // The stored form is the v1 form: the 12 digits, nothing else.
        assert_eq!(postcard::to_allocvec(&c).unwrap(), b"046196000400");
        assert_eq!(postcard::from_bytes::<Cccd>(b"046196000400").unwrap(), c);
        assert!(
            postcard::from_bytes::<Cccd>(b"04619600040\xff").is_err(),
            "a corrupted digit is an error, not a panic later"
        );
    }
}
