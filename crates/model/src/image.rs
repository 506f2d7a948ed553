//! Turns caller images into model input: decoding with limits, and the 112x112 RGB crop.
//!
//! Limits are checked on the header before any pixel is decoded, so a small file that
//! claims a huge image (a decompression bomb) is refused without allocating for it.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use crate::error::ImageError;

/// Side of the square, aligned face crop the model takes (the ArcFace template size).
pub const CROP_SIZE: u32 = 112;
const CROP_LEN: usize = (CROP_SIZE * CROP_SIZE * 3) as usize;

/// Upper bounds on what a caller may send.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_encoded_bytes: usize,
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_encoded_bytes: 16 * 1024 * 1024,
            max_pixels: 40_000_000,
        }
    }
}

/// Decodes a JPEG, PNG or WebP file into 8-bit RGB, upright: the EXIF orientation
/// that cameras write instead of rotating pixels is applied.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    if bytes.len() > limits.max_encoded_bytes {
        return Err(ImageError::TooLarge {
            size: bytes.len(),
            limit: limits.max_encoded_bytes,
        });
    }
    let reader = |bytes| -> Result<ImageReader<Cursor<&[u8]>>, ImageError> {
        let reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| ImageError::Corrupt(e.to_string()))?;
        match reader.format() {
            Some(ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP) => Ok(reader),
            _ => Err(ImageError::UnsupportedFormat),
        }
    };
    let first = reader(bytes)?;
    if first.format() == Some(ImageFormat::Jpeg) && !jpeg_is_complete(bytes) {
        // The decoder would fill the missing rows with grey and report success.
        return Err(ImageError::Corrupt(
            "truncated JPEG: no end-of-image marker after the image data".into(),
        ));
    }
    let (width, height) = first.into_dimensions().map_err(classify)?;
    check_pixels(width, height, limits)?;

    let mut decode_limits = Limits::default();
    decode_limits.max_image_width = Some(width);
    decode_limits.max_image_height = Some(height);
    // Room for the decoded image at 16 bits per channel with alpha, plus slack.
    decode_limits.max_alloc = Some(u64::from(width) * u64::from(height) * 8 + (1 << 20));
    let mut decoder = reader(bytes)?.into_decoder().map_err(classify)?;
    decoder.set_limits(decode_limits).map_err(classify)?;
    // A missing or unreadable orientation tag means the pixels are upright.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(classify)?;
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

/// Whether an end-of-image marker (FF D9) follows the first start-of-scan (FF DA).
/// Inside entropy-coded data every FF byte is stuffed (FF 00), so FF D9 after the
/// scan starts is the real end marker; thumbnails in EXIF come before the scan.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let Some(scan) = bytes.windows(2).position(|w| w == [0xff, 0xda]) else {
        return false;
    };
    bytes[scan..].windows(2).any(|w| w == [0xff, 0xd9])
}

/// Wraps packed RGB8 pixels, checking that their length matches the stated size.
pub fn from_raw(
    width: u32,
    height: u32,
    rgb: Vec<u8>,
    limits: &DecodeLimits,
) -> Result<RgbImage, ImageError> {
    let expected = u64::from(width) * u64::from(height) * 3;
    if width == 0 || height == 0 || rgb.len() as u64 != expected {
        return Err(ImageError::RawSizeMismatch {
            width,
            height,
            len: rgb.len(),
            expected,
        });
    }
    check_pixels(width, height, limits)?;
    RgbImage::from_raw(width, height, rgb).ok_or(ImageError::RawSizeMismatch {
        width,
        height,
        len: expected as usize,
        expected,
    })
}

fn check_pixels(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), ImageError> {
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(ImageError::TooManyPixels {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    Ok(())
}

fn classify(err: image::ImageError) -> ImageError {
    match err {
        image::ImageError::Unsupported(_) => ImageError::UnsupportedFormat,
        other => ImageError::Corrupt(other.to_string()),
    }
}

/// One face aligned to the 112x112 template, as packed RGB8 (row-major, HWC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaceCrop {
    rgb: Vec<u8>,
}

impl FaceCrop {
    /// Takes an image that already is an aligned crop.
    pub fn from_aligned(img: RgbImage) -> Result<Self, ImageError> {
        if img.width() != CROP_SIZE || img.height() != CROP_SIZE {
            return Err(ImageError::NotAlignedSize {
                width: img.width(),
                height: img.height(),
                expected: CROP_SIZE,
            });
        }
        Ok(Self {
            rgb: img.into_raw(),
        })
    }

    /// Packed RGB8 pixels, 112 * 112 * 3 bytes.
    pub fn rgb(&self) -> &[u8] {
        &self.rgb
    }

    /// Number of f32 values one crop occupies in the model's NCHW input.
    pub const TENSOR_LEN: usize = CROP_LEN;

    /// Writes the crop as planar (CHW) f32 RGB in 0..255, the model's input layout;
    /// the network itself applies (x - 127.5) / 128.
    pub fn write_chw(&self, out: &mut [f32]) {
        let plane = (CROP_SIZE * CROP_SIZE) as usize;
        debug_assert_eq!(out.len(), 3 * plane);
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for (i, px) in self.rgb.chunks_exact(3).enumerate() {
            r[i] = f32::from(px[0]);
            g[i] = f32::from(px[1]);
            b[i] = f32::from(px[2]);
        }
    }

    /// Like [`FaceCrop::write_chw`], of the crop mirrored left to right (test-time flip).
    pub fn write_chw_mirrored(&self, out: &mut [f32]) {
        let side = CROP_SIZE as usize;
        let plane = side * side;
        debug_assert_eq!(out.len(), 3 * plane);
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for (row, pixels) in self.rgb.chunks_exact(3 * side).enumerate() {
            for (col, px) in pixels.chunks_exact(3).enumerate() {
                let i = row * side + (side - 1 - col);
                r[i] = f32::from(px[0]);
                g[i] = f32::from(px[1]);
                b[i] = f32::from(px[2]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_png_to_rgb() {
        let img = decode(&png(112, 112), &DecodeLimits::default()).unwrap();
        assert_eq!(img.dimensions(), (112, 112));
        assert_eq!(img.get_pixel(5, 9).0, [5, 9, 7]);
    }

    #[test]
    fn refuses_garbage_empty_and_oversized() {
        let limits = DecodeLimits::default();
        assert_eq!(decode(b"", &limits), Err(ImageError::Empty));
        assert_eq!(
            decode(b"definitely not an image", &limits),
            Err(ImageError::UnsupportedFormat)
        );
        let small = DecodeLimits {
            max_encoded_bytes: 10,
            max_pixels: 100,
        };
        assert!(matches!(
            decode(&png(4, 4), &small),
            Err(ImageError::TooLarge { .. })
        ));
    }

    #[test]
    fn refuses_too_many_pixels_before_decoding() {
        let limits = DecodeLimits {
            max_encoded_bytes: 1 << 20,
            max_pixels: 100 * 100,
        };
        assert_eq!(
            decode(&png(200, 100), &limits),
            Err(ImageError::TooManyPixels {
                width: 200,
                height: 100,
                limit: 10_000
            })
        );
    }

    #[test]
    fn exif_orientation_is_applied() {
        use image::codecs::jpeg::JpegEncoder;
        use image::ImageEncoder;
        // A TIFF header with one IFD entry: Orientation (0x0112) = 6, "rotate 90 CW".
        let exif = [
            b'I', b'I', 0x2a, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0,
            0, 0,
        ];
        let img = RgbImage::from_fn(40, 20, |x, _| image::Rgb([if x < 20 { 0 } else { 255 }; 3]));
        let mut out = Vec::new();
        let mut encoder = JpegEncoder::new_with_quality(&mut out, 95);
        encoder.set_exif_metadata(exif.to_vec()).unwrap();
        encoder
            .write_image(img.as_raw(), 40, 20, image::ExtendedColorType::Rgb8)
            .unwrap();
        let upright = decode(&out, &DecodeLimits::default()).unwrap();
        assert_eq!(upright.dimensions(), (20, 40));
        // Rotated clockwise: the image's left half (dark) is now the top.
        assert!(upright.get_pixel(10, 5).0[0] < 50);
        assert!(upright.get_pixel(10, 35).0[0] > 200);
    }

    #[test]
    fn truncated_jpeg_is_corrupt() {
        let img = RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 4, y as u8 * 4, 7]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        let bytes = out.into_inner();
        assert!(decode(&bytes, &DecodeLimits::default()).is_ok());
        let err = decode(&bytes[..bytes.len() * 2 / 3], &DecodeLimits::default()).unwrap_err();
        assert!(
            matches!(&err, ImageError::Corrupt(m) if m.contains("truncated JPEG")),
            "{err:?}"
        );
    }

    #[test]
    fn truncated_png_is_corrupt() {
        let bytes = png(112, 112);
        let err = decode(&bytes[..bytes.len() / 2], &DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, ImageError::Corrupt(_)), "{err:?}");
    }

    #[test]
    fn raw_pixels_must_match_their_size() {
        let limits = DecodeLimits::default();
        assert!(from_raw(112, 112, vec![0; 112 * 112 * 3], &limits).is_ok());
        assert!(matches!(
            from_raw(112, 112, vec![0; 100], &limits),
            Err(ImageError::RawSizeMismatch { len: 100, .. })
        ));
        assert!(from_raw(0, 0, vec![], &limits).is_err());
    }

    #[test]
    fn crop_is_written_planar() {
        let img = RgbImage::from_fn(112, 112, |x, _| image::Rgb([x as u8, 100, 200]));
        let crop = FaceCrop::from_aligned(img).unwrap();
        let mut out = vec![0.0; FaceCrop::TENSOR_LEN];
        crop.write_chw(&mut out);
        assert_eq!(out[3], 3.0);
        assert_eq!(out[112 * 112 + 3], 100.0);
        assert_eq!(out[2 * 112 * 112 + 3], 200.0);
        assert!(FaceCrop::from_aligned(RgbImage::new(100, 112)).is_err());
    }

    #[test]
    fn mirrored_crop_reverses_each_row() {
        let img = RgbImage::from_fn(112, 112, |x, y| {
            image::Rgb([x as u8, y as u8, 200 - x as u8])
        });
        let crop = FaceCrop::from_aligned(img).unwrap();
        let mut out = vec![0.0; FaceCrop::TENSOR_LEN];
        crop.write_chw_mirrored(&mut out);
        let plane = 112 * 112;
        assert_eq!(out[0], 111.0); // row 0, column 0 holds column 111
        assert_eq!(out[111], 0.0);
        assert_eq!(out[5 * 112 + 3], 108.0);
        assert_eq!(out[plane + 5 * 112 + 3], 5.0);
        assert_eq!(out[2 * plane + 5 * 112 + 3], 200.0 - 108.0);
    }
}
