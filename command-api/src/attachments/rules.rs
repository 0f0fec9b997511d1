//! What an upload may be: the content types of each kind, the size limits,
//! and the file names allowed.
//!
//! The content types are an allow-list because the bucket serves objects
//! with the type they were uploaded with: a type a browser renders and runs
//! (HTML, SVG, JavaScript) would turn a download URL into a page with
//! scripts on the bucket's origin. File names are refused when they name a
//! program (`.exe`, `.apk`, `.sh` …) or a page, whatever the declared type,
//! since the receiving app saves the file under that name.

use duet_common::error::{ApiError, ErrorCode};
use duet_common::settings::AttachmentSettings;

use super::AttachmentKind;

/// Longest `fileName`, in characters.
pub const MAX_FILE_NAME_CHARS: usize = 255;

const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/webp", "image/heic", "image/heif", "image/gif"];
const VIDEO_TYPES: &[&str] = &["video/mp4", "video/quicktime", "video/webm"];
const AUDIO_TYPES: &[&str] =
    &["audio/aac", "audio/mp4", "audio/m4a", "audio/x-m4a", "audio/mpeg", "audio/ogg", "audio/webm", "audio/wav", "audio/x-wav"];
const FILE_TYPES: &[&str] = &[
    "application/pdf",
    "application/zip",
    "application/json",
    "application/rtf",
    "application/epub+zip",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
    "text/plain",
    "text/csv",
    "text/calendar",
    "text/vcard",
];

/// Extensions of programs, scripts and pages: refused in any file name.
const REFUSED_EXTENSIONS: &[&str] = &[
    "exe", "msi", "bat", "cmd", "com", "scr", "pif", "cpl", "ps1", "vbs", "vbe", "js", "jse", "wsf", "hta", "jar", "apk", "aab", "ipa",
    "app", "dmg", "pkg", "deb", "rpm", "sh", "bash", "command", "dll", "so", "dylib", "lnk", "reg", "html", "htm", "xhtml", "shtml", "svg",
    "svgz", "xml", "mht", "mhtml",
];

/// The content types allowed for `kind`.
pub fn content_types(kind: AttachmentKind) -> &'static [&'static str] {
    match kind {
        AttachmentKind::Image => IMAGE_TYPES,
        AttachmentKind::Video => VIDEO_TYPES,
        AttachmentKind::Audio => AUDIO_TYPES,
        AttachmentKind::File => FILE_TYPES,
    }
}

/// The content type as stored and signed (lower-case, trimmed), if `kind` allows it.
/// Parameters (`; charset=…`) are refused: the type must match the upload exactly.
pub fn content_type(kind: AttachmentKind, declared: &str) -> Result<String, ApiError> {
    let normalized = declared.trim().to_ascii_lowercase();
    if content_types(kind).contains(&normalized.as_str()) {
        return Ok(normalized);
    }
    Err(ApiError::new(
        ErrorCode::InvalidContentType,
        format!("`contentType` must be one of {} for `{}`", content_types(kind).join(", "), kind.as_str()),
    ))
}

/// The largest upload of `kind`, in bytes.
pub fn max_size(settings: &AttachmentSettings, kind: AttachmentKind) -> u64 {
    match kind {
        AttachmentKind::Image => settings.attachment_max_image_bytes,
        AttachmentKind::Video => settings.attachment_max_video_bytes,
        AttachmentKind::Audio => settings.attachment_max_audio_bytes,
        AttachmentKind::File => settings.attachment_max_file_bytes,
    }
}

/// `size` is at least 1 byte and at most the kind's limit.
pub fn size(settings: &AttachmentSettings, kind: AttachmentKind, size: i64) -> Result<i64, ApiError> {
    let max = max_size(settings, kind);
    match u64::try_from(size) {
        Ok(bytes) if bytes > max => {
            Err(ApiError::new(ErrorCode::AttachmentTooLarge, format!("`size` must be at most {max} bytes for `{}`", kind.as_str())))
        }
        Ok(bytes) if bytes >= 1 => Ok(size),
        _ => Err(ApiError::new(ErrorCode::BadRequest, "`size` must be at least 1 byte")),
    }
}

/// A file name is 1 to 255 characters after trimming, without control
/// characters or path separators, not `.`/`..`, and not a program's or a page's.
pub fn file_name(name: &str) -> Result<String, ApiError> {
    let refused = |why: &str| Err(ApiError::new(ErrorCode::InvalidFileName, format!("`fileName` {why}")));
    let name = name.trim();
    if name.is_empty() || name == "." || name == ".." {
        return refused("must name a file");
    }
    if name.chars().count() > MAX_FILE_NAME_CHARS {
        return refused(&format!("must be at most {MAX_FILE_NAME_CHARS} characters"));
    }
    if name.chars().any(|c| c.is_control() || c == '/' || c == '\\') {
        return refused("must not contain control characters, `/` or `\\`");
    }
    let extension = name.rsplit_once('.').map(|(_, ext)| ext.trim().to_ascii_lowercase());
    if extension.is_some_and(|ext| REFUSED_EXTENSIONS.contains(&ext.as_str())) {
        return refused("must not name a program, a script or a web page");
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: Result<impl std::fmt::Debug, ApiError>) -> &'static str {
        result.unwrap_err().code().as_str()
    }

    #[test]
    fn content_types_are_allowed_per_kind_and_normalized() {
        assert_eq!(content_type(AttachmentKind::Image, " Image/JPEG ").unwrap(), "image/jpeg");
        assert_eq!(content_type(AttachmentKind::Audio, "audio/mp4").unwrap(), "audio/mp4");
        assert_eq!(code(content_type(AttachmentKind::Image, "video/mp4")), "invalid_content_type");
        for rendered in ["text/html", "image/svg+xml", "application/javascript", "application/octet-stream", "image/jpeg; x=1"] {
            for kind in [AttachmentKind::Image, AttachmentKind::Video, AttachmentKind::Audio, AttachmentKind::File] {
                assert!(content_type(kind, rendered).is_err(), "{rendered} allowed for {kind:?}");
            }
        }
    }

    #[test]
    fn sizes_are_bounded_by_the_kinds_limit() {
        let settings = duet_common::Settings::from_env().unwrap().attachments;
        let max = settings.attachment_max_image_bytes as i64;
        assert_eq!(size(&settings, AttachmentKind::Image, max).unwrap(), max);
        assert_eq!(code(size(&settings, AttachmentKind::Image, max + 1)), "attachment_too_large");
        assert_eq!(code(size(&settings, AttachmentKind::Image, 0)), "bad_request");
        assert!(size(&settings, AttachmentKind::Video, max + 1).is_ok(), "videos may be larger");
    }

    #[test]
    fn file_names_are_plain_names_of_documents() {
        assert_eq!(file_name("  Trip report (final).pdf ").unwrap(), "Trip report (final).pdf");
        assert_eq!(file_name(&"é".repeat(255)).unwrap().chars().count(), 255);
        for bad in ["", " ", ".", "..", "../etc/passwd", "a\\b.pdf", "a\nb.pdf", "setup.EXE", "page.html", "x.svg", "run.sh "] {
            assert_eq!(code(file_name(bad)), "invalid_file_name", "{bad:?}");
        }
        assert_eq!(code(file_name(&"é".repeat(256))), "invalid_file_name");
    }
}
