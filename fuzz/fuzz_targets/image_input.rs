//! Caller image bytes through what the service does before inference: decoding
//! (JPEG, PNG, WebP, with EXIF orientation and the size limits), the aligned-crop
//! check, the detector's input planes, and alignment with caller landmarks.
//!
//! Input: one mode byte, ten landmark bytes, then the image file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vargid_model::detector::input_planes;
use vargid_model::image::{decode, DecodeLimits};
use vargid_model::{align, FaceCrop, CROP_SIZE};

fuzz_target!(|data: &[u8]| {
    let Some((&[mode], rest)) = data.split_first_chunk::<1>() else {
        return;
    };
    let Some((spots, file)) = rest.split_first_chunk::<10>() else {
        return;
    };
    // The service's default limits (config `[limits]` has the same values).
    let limits = DecodeLimits::default();
    let Ok(rgb) = decode(file, &limits) else {
        return;
    };
    let (w, h) = rgb.dimensions();
    assert!(w > 0 && h > 0 && u64::from(w) * u64::from(h) <= limits.max_pixels);
    if w == CROP_SIZE && h == CROP_SIZE {
        let crop = FaceCrop::from_aligned(rgb.clone()).expect("a 112x112 image is a crop");
        assert_eq!(crop.rgb().len(), (CROP_SIZE * CROP_SIZE * 3) as usize);
    }
    if mode & 1 == 1 {
        let mut planes = Vec::new();
        let max_side = 640;
        let (sw, sh, pw, ph) = input_planes(&rgb, max_side, &mut planes);
        assert!(sw <= max_side as usize && sh <= max_side as usize);
        assert!(pw % 32 == 0 && ph % 32 == 0 && pw >= sw && ph >= sh);
        assert_eq!(planes.len(), 3 * pw * ph);
    }
    // Landmarks anywhere the service accepts them: [-w, 2w] x [-h, 2h].
    let (fw, fh) = (w as f32, h as f32);
    let mut points = [[0.0f32; 2]; 5];
    for (p, xy) in points.iter_mut().zip(spots.chunks_exact(2)) {
        *p = [
            -fw + 3.0 * fw * f32::from(xy[0]) / 255.0,
            -fh + 3.0 * fh * f32::from(xy[1]) / 255.0,
        ];
    }
    if let Some(crop) = align(&rgb, &points) {
        assert_eq!(crop.rgb().len(), (CROP_SIZE * CROP_SIZE * 3) as usize);
    }
});
