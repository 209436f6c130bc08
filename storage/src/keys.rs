//! Object keys and file names.
//!
//! Keys follow Supabase Storage's object-name rule (S3-safe characters only, non-empty) and live
//! under the owner's folder, `{user_id}/…`: the layout Supabase projects' storage policies check
//! with `storage.foldername(name)[1] = auth.uid()::text`. File names users send are reduced to a
//! display name (no path, no control characters, at most 255 bytes) and, for keys, to the
//! characters the rule allows.

/// Supabase Storage's rule for object names: `^[A-Za-z0-9_/!.*'() &$=@;:+,?-]*$`, non-empty.
pub fn is_valid_object_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_key_byte)
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_/!.*'() &$=@;:+,?-".contains(&b)
}

/// Why a key a client named is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("Invalid key: {0}")]
    Invalid(String),
    #[error("the path must start with your own folder ({0}/)")]
    OutsideOwnFolder(String),
}

/// A key checked to be valid and inside `owner`'s folder, with no empty, `.` or `..` segment.
pub fn owned_key(owner: &str, name: &str) -> Result<String, KeyError> {
    if !is_valid_object_name(name)
        || name.len() > 1024
        || name
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(KeyError::Invalid(name.to_owned()));
    }
    if folder_of(name) != Some(owner) {
        return Err(KeyError::OutsideOwnFolder(owner.to_owned()));
    }
    Ok(name.to_owned())
}

/// The first folder of a key (`storage.foldername(name)[1]`), if it has one.
pub fn folder_of(key: &str) -> Option<&str> {
    key.split_once('/').map(|(folder, _)| folder)
}

/// The last segment of a key: the file's name.
pub fn base_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// Longest display name kept, in bytes (the `knowledge_files.file_name` limit).
pub const MAX_NAME_BYTES: usize = 255;

/// The name to show and store for a file a client named: the last path segment (either slash),
/// without control characters (NUL included), trimmed, at most [`MAX_NAME_BYTES`] bytes with the
/// extension kept; `file` when nothing is left. `..` and `.` become `file` too.
pub fn display_name(original: &str) -> String {
    let last = original.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim();
    if cleaned.is_empty() {
        return "file".to_owned();
    }
    shorten(cleaned, MAX_NAME_BYTES)
}

/// A display name reduced to the characters object keys allow (others become `_`).
pub fn key_name(display: &str) -> String {
    let mapped: String = display
        .chars()
        .map(|c| {
            if c.is_ascii() && is_key_byte(c as u8) && c != '/' && c != '?' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mapped = mapped.trim_start_matches('.');
    if mapped.is_empty() {
        "file".to_owned()
    } else {
        mapped.to_owned()
    }
}

/// Cuts `name` to at most `max` bytes on a character boundary, keeping a short extension.
fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let extension = name
        .rfind('.')
        .map(|dot| &name[dot..])
        .filter(|ext| ext.len() <= 16)
        .unwrap_or("");
    let mut stem_end = max - extension.len();
    while !name.is_char_boundary(stem_end) {
        stem_end -= 1;
    }
    format!("{}{extension}", &name[..stem_end])
}

/// A `Content-Disposition` value for downloading `name`: an ASCII fallback and the exact name
/// in RFC 5987 form, so no quote, semicolon or newline of a file name reaches the header.
pub fn content_disposition(name: &str) -> String {
    let ascii: String = key_name(name)
        .chars()
        .map(|c| {
            if c == '"' || c == '\\' || c == ';' {
                '_'
            } else {
                c
            }
        })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(name, RFC5987).to_string();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// RFC 5987 `attr-char`: everything else is percent-encoded.
const RFC5987: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";

    #[test]
    fn supabase_object_name_rule() {
        assert!(is_valid_object_name("folder/cat (1).png"));
        assert!(is_valid_object_name("a!*'()&$=@;:+,?-_."));
        assert!(!is_valid_object_name(""));
        assert!(!is_valid_object_name("résumé.pdf"));
        assert!(!is_valid_object_name("a\u{0}b"));
        assert!(!is_valid_object_name("tab\there"));
        assert!(!is_valid_object_name("back\\slash"));
    }

    #[test]
    fn keys_stay_in_the_owners_folder() {
        assert!(owned_key(ALICE, &format!("{ALICE}/notes.md")).is_ok());
        assert!(owned_key(ALICE, &format!("{ALICE}/a/b/c.txt")).is_ok());
        for bad in [
            format!("{ALICE}/../b0b00000-0000-4000-8000-000000000002/x"),
            format!("{ALICE}/./x"),
            format!("{ALICE}//x"),
            format!("{ALICE}/"),
            ALICE.to_owned(),
        ] {
            assert!(owned_key(ALICE, &bad).is_err(), "{bad}");
        }
        assert_eq!(
            owned_key(ALICE, "b0b00000-0000-4000-8000-000000000002/x"),
            Err(KeyError::OutsideOwnFolder(ALICE.into()))
        );
        assert_eq!(
            owned_key(ALICE, "notes.md"),
            Err(KeyError::OutsideOwnFolder(ALICE.into()))
        );
    }

    #[test]
    fn file_names_are_made_safe() {
        assert_eq!(display_name("../../etc/passwd"), "passwd");
        assert_eq!(display_name("C:\\Users\\x\\report.pdf"), "report.pdf");
        assert_eq!(display_name("a\u{0}b\r\nc.txt"), "abc.txt");
        assert_eq!(display_name(".."), "file");
        assert_eq!(display_name("   "), "file");
        assert_eq!(display_name(".bashrc"), "bashrc");
        let long = format!("{}.pdf", "é".repeat(200));
        let short = display_name(&long);
        assert!(
            short.len() <= MAX_NAME_BYTES && short.ends_with(".pdf"),
            "{short}"
        );
        assert_eq!(key_name("résumé (v2).pdf"), "r_sum_ (v2).pdf");
        assert_eq!(key_name("what?.txt"), "what_.txt");
        assert!(is_valid_object_name(&key_name(&display_name(
            &"x\u{7}/ä".repeat(100)
        ))));
    }

    #[test]
    fn content_disposition_cannot_be_broken_out_of() {
        let header = content_disposition("evil\"; filename=x.exe\r\n.pdf");
        assert!(!header.contains('\r') && !header.contains('\n'));
        assert_eq!(header.matches('"').count(), 2, "{header}");
        assert!(header.contains("filename*=UTF-8''evil%22%3B%20filename%3Dx.exe%0D%0A.pdf"));
        assert_eq!(
            content_disposition("résumé.pdf"),
            "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
        );
    }
}
