//! Image references (`name[:tag]`), normalised the way docker users expect: a missing tag
//! means `latest`.

use super::error::{Result, StoreError};

/// Splits and validates `name[:tag]`; returns `name:tag`.
pub fn normalize(reference: &str) -> Result<String> {
    let bad = || StoreError::BadReference(reference.to_string());
    let (name, tag) = match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => (&reference[..i], &reference[i + 1..]),
        _ => (reference, "latest"),
    };
    let name_ok = !name.is_empty()
        && !name.starts_with('/')
        && !name.ends_with('/')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:".contains(&b));
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if name_ok && tag_ok {
        Ok(format!("{name}:{tag}"))
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_latest_and_keeps_registry_ports() {
        assert_eq!(normalize("busybox").unwrap(), "busybox:latest");
        assert_eq!(normalize("a/b:1.2").unwrap(), "a/b:1.2");
        assert_eq!(
            normalize("localhost:5000/x").unwrap(),
            "localhost:5000/x:latest"
        );
        assert_eq!(
            normalize("localhost:5000/x:v1").unwrap(),
            "localhost:5000/x:v1"
        );
        assert!(normalize("Bad").is_err());
        assert!(normalize("x:").is_err());
        assert!(normalize("").is_err());
    }
}
