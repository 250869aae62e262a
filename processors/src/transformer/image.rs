//! The image pipeline: decode with hard limits, honour EXIF orientation, convert to sRGB,
//! resize, and encode lossy WebP variants plus a ThumbHash placeholder. Output carries no
//! metadata at all (libwebp's simple encoder writes none).
//!
//! Speed comes from doing less: JPEGs are decoded by libjpeg-turbo at a reduced DCT scale
//! (shrink-on-decode) to the smallest size still at least as large as the biggest variant,
//! the colour transform and rotation run on the resized pixels, and the thumbnail is
//! resized from the display variant rather than from the original.
//!
//! This code runs inside an isolated child process in production ([`super::isolate`]); it
//! must still never panic on hostile input, and refuses oversized images before allocating.

use std::io::Cursor;

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage, RgbaImage};
use turbojpeg::{Decompressor, PixelFormat, ScalingFactor};

use super::jpeg_meta;

/// The variants every image gets: name and the longest side it fits into.
pub const VARIANTS: [(&str, u32); 2] = [("display", 1280), ("thumb", 320)];

/// How much larger than the biggest variant the DCT-scaled decode must be. Scaling in the
/// DCT domain all the way down softens detail (3/8 of a 4217 px photo for 1280 px lost 0.02
/// SSIM); leaving Lanczos3 the last third of the reduction keeps the detail, and the output
/// is even smaller and faster to encode (measured on `bench-images`, see docs/BENCHMARKS.md).
const DCT_OVERSAMPLE: f64 = 1.5;

/// WebP quality of the variants (libwebp scale, like sharp's default 80).
pub const WEBP_QUALITY: f32 = 80.0;

/// Limits applied before and while decoding.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    /// Most pixels (width x height) an input may declare.
    pub max_pixels: u64,
    /// Longest side an input may declare.
    pub max_side: u32,
    /// Most progressive-JPEG scans (a scan bomb is thousands of tiny scans).
    pub max_jpeg_scans: u32,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_pixels: 100_000_000,
            max_side: 30_000,
            max_jpeg_scans: 500,
        }
    }
}

/// Why an image was refused; all of these are about the input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    /// It declares more pixels than allowed (decompression bombs do).
    #[error("the image is {width}x{height}, larger than the {max_pixels}-pixel limit")]
    TooLarge {
        /// Declared width.
        width: u64,
        /// Declared height.
        height: u64,
        /// The limit.
        max_pixels: u64,
    },
    /// The decoder refused it (truncated, corrupt, not what it claims).
    #[error("the image cannot be decoded: {0}")]
    Undecodable(String),
    /// A format this pipeline does not render.
    #[error("unsupported image format: {0}")]
    Unsupported(String),
}

impl ImageError {
    /// Machine-readable reason for `UploadRejected`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "image_too_large",
            Self::Undecodable(_) => "undecodable_image",
            Self::Unsupported(_) => "unsupported_image",
        }
    }
}

/// One encoded output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedVariant {
    /// Variant name (`display`, `thumb`).
    pub name: String,
    /// Encoded bytes.
    pub bytes: Vec<u8>,
    /// MIME type of `bytes`.
    pub content_type: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Everything produced from one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The variants, largest first.
    pub variants: Vec<EncodedVariant>,
    /// ThumbHash of the image, base64 (a ~25-byte blurred preview for instant display).
    pub placeholder: String,
}

/// Decoded, possibly pre-shrunk pixels with what is still to be applied to them.
struct Decoded {
    pixels: Image<'static>,
    orientation: Orientation,
    icc: Option<Vec<u8>>,
}

/// Renders the standard variants of an encoded image.
pub fn render(input: &[u8], limits: &ImageLimits) -> Result<Rendered, ImageError> {
    let largest = VARIANTS.iter().map(|(_, side)| *side).max().unwrap_or(1280);
    let decoded = decode(input, limits, largest)?;
    let mut variants = Vec::with_capacity(VARIANTS.len());
    let mut source = prepare(decoded, largest)?;
    for (name, side) in VARIANTS {
        let resized = resize_to_fit(&source, side)?;
        variants.push(encode_webp(name, &resized)?);
        source = resized;
    }
    let placeholder = placeholder(&source)?;
    Ok(Rendered {
        variants,
        placeholder,
    })
}

/// sharp's benchmark operation, for the side-by-side benchmark: decode, resize to `width`
/// (keeping the aspect ratio), encode JPEG at `quality`.
pub fn render_jpeg(input: &[u8], width: u32, quality: i32) -> Result<EncodedVariant, ImageError> {
    let limits = ImageLimits::default();
    let decoded = decode(input, &limits, width)?;
    let source = prepare(decoded, width)?;
    let height = scale_side(source.height(), width, source.width());
    let resized = resize(&source, width, height)?;
    let mut compressor =
        turbojpeg::Compressor::new().map_err(|e| ImageError::Undecodable(e.to_string()))?;
    let set = |r: turbojpeg::Result<()>| r.map_err(|e| ImageError::Undecodable(e.to_string()));
    set(compressor.set_quality(quality))?;
    set(compressor.set_subsamp(turbojpeg::Subsamp::Sub2x2))?;
    set(compressor.set_optimize(true))?;
    let bytes = compressor
        .compress_to_vec(turbojpeg::Image {
            pixels: resized.buffer(),
            width: resized.width() as usize,
            pitch: resized.width() as usize * 3,
            height: resized.height() as usize,
            format: PixelFormat::RGB,
        })
        .map_err(|e| ImageError::Undecodable(e.to_string()))?;
    Ok(EncodedVariant {
        name: format!("{width}"),
        bytes,
        content_type: "image/jpeg".into(),
        width: resized.width(),
        height: resized.height(),
    })
}

fn check_size(width: u64, height: u64, limits: &ImageLimits) -> Result<(), ImageError> {
    let too_large = width.saturating_mul(height) > limits.max_pixels
        || width > u64::from(limits.max_side)
        || height > u64::from(limits.max_side);
    if too_large {
        return Err(ImageError::TooLarge {
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    if width == 0 || height == 0 {
        return Err(ImageError::Undecodable("the image has no pixels".into()));
    }
    Ok(())
}

fn decode(input: &[u8], limits: &ImageLimits, target: u32) -> Result<Decoded, ImageError> {
    if input.starts_with(&[0xFF, 0xD8, 0xFF]) {
        decode_jpeg(input, limits, target)
    } else {
        decode_other(input, limits)
    }
}

/// libjpeg-turbo at the smallest DCT scale that still covers `target` on both axes.
fn decode_jpeg(input: &[u8], limits: &ImageLimits, target: u32) -> Result<Decoded, ImageError> {
    let undecodable = |e: turbojpeg::Error| ImageError::Undecodable(e.to_string());
    let mut decompressor = Decompressor::new().map_err(undecodable)?;
    let header = decompressor.read_header(input).map_err(undecodable)?;
    check_size(header.width as u64, header.height as u64, limits)?;
    decompressor
        .set_scan_limit(limits.max_jpeg_scans)
        .map_err(undecodable)?;
    let (w, h) = (header.width, header.height);
    // The box the largest variant needs, before orientation (a rotation swaps axes, and the
    // fit is computed on the long side, so the box is symmetric).
    let need = fit(w as u32, h as u32, target);
    let need = (
        (f64::from(need.0) * DCT_OVERSAMPLE) as usize,
        (f64::from(need.1) * DCT_OVERSAMPLE) as usize,
    );
    let scale = [1usize, 2, 3, 4, 5, 6, 7, 8]
        .into_iter()
        .map(|num| ScalingFactor::new(num, 8))
        .find(|s| s.scale(w) >= need.0.min(w) && s.scale(h) >= need.1.min(h))
        .unwrap_or(ScalingFactor::ONE);
    decompressor
        .set_scaling_factor(scale)
        .map_err(undecodable)?;
    let scaled = header.scaled(scale);
    let mut pixels = vec![0u8; scaled.width * scaled.height * 3];
    decompressor
        .decompress(
            input,
            turbojpeg::Image {
                pixels: pixels.as_mut_slice(),
                width: scaled.width,
                pitch: scaled.width * 3,
                height: scaled.height,
                format: PixelFormat::RGB,
            },
        )
        .map_err(undecodable)?;
    let meta = jpeg_meta::read(input);
    let pixels = Image::from_vec_u8(
        u32::try_from(scaled.width).unwrap_or(u32::MAX),
        u32::try_from(scaled.height).unwrap_or(u32::MAX),
        pixels,
        PixelType::U8x3,
    )
    .map_err(|e| ImageError::Undecodable(e.to_string()))?;
    Ok(Decoded {
        pixels,
        orientation: Orientation::from_exif(meta.orientation).unwrap_or(Orientation::NoTransforms),
        icc: meta.icc,
    })
}

/// PNG, GIF (first frame) and WebP through the `image` crate, with its allocation limits.
fn decode_other(input: &[u8], limits: &ImageLimits) -> Result<Decoded, ImageError> {
    let undecodable = |e: image::ImageError| ImageError::Undecodable(e.to_string());
    let reader = ImageReader::new(Cursor::new(input))
        .with_guessed_format()
        .map_err(|e| ImageError::Undecodable(e.to_string()))?;
    match reader.format() {
        Some(image::ImageFormat::Png | image::ImageFormat::Gif | image::ImageFormat::WebP) => {}
        Some(other) => return Err(ImageError::Unsupported(format!("{other:?}"))),
        None => return Err(ImageError::Unsupported("unknown".into())),
    }
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let (w, h) = decoder.dimensions();
    check_size(u64::from(w), u64::from(h), limits)?;
    let mut decoder_limits = Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    decoder.set_limits(decoder_limits).map_err(undecodable)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let icc = decoder.icc_profile().ok().flatten();
    let image = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    let pixels = if image.color().has_alpha() {
        let rgba = image.into_rgba8();
        let (w, h) = rgba.dimensions();
        Image::from_vec_u8(w, h, rgba.into_raw(), PixelType::U8x4)
    } else {
        let rgb = image.into_rgb8();
        let (w, h) = rgb.dimensions();
        Image::from_vec_u8(w, h, rgb.into_raw(), PixelType::U8x3)
    }
    .map_err(|e| ImageError::Undecodable(e.to_string()))?;
    Ok(Decoded {
        pixels,
        orientation,
        icc,
    })
}

/// Resizes to the largest output, converts to sRGB and applies the orientation: the
/// expensive per-pixel steps run on the smallest buffer that serves every variant.
fn prepare(decoded: Decoded, largest: u32) -> Result<Image<'static>, ImageError> {
    let Decoded {
        pixels,
        orientation,
        icc,
    } = decoded;
    let mut pixels = resize_to_fit(&pixels, largest)?;
    if let Some(icc) = icc {
        to_srgb(&mut pixels, &icc);
    }
    orient(pixels, orientation)
}

/// Converts pixels in place from the embedded profile to sRGB; unusable or already-sRGB
/// profiles leave the pixels as they are.
fn to_srgb(pixels: &mut Image<'static>, icc: &[u8]) {
    let Some(profile) = qcms::Profile::new_from_slice(icc, false) else {
        return;
    };
    if profile.is_sRGB() {
        return;
    }
    let mut srgb = qcms::Profile::new_sRGB();
    srgb.precache_output_transform();
    let data_type = match pixels.pixel_type() {
        PixelType::U8x4 => qcms::DataType::RGBA8,
        _ => qcms::DataType::RGB8,
    };
    if let Some(transform) =
        qcms::Transform::new(&profile, &srgb, data_type, qcms::Intent::Perceptual)
    {
        transform.apply(pixels.buffer_mut());
    }
}

fn orient(pixels: Image<'static>, orientation: Orientation) -> Result<Image<'static>, ImageError> {
    if orientation == Orientation::NoTransforms {
        return Ok(pixels);
    }
    let (w, h, alpha) = (
        pixels.width(),
        pixels.height(),
        pixels.pixel_type() == PixelType::U8x4,
    );
    let buffer_error = || ImageError::Undecodable("pixel buffer size mismatch".into());
    let mut image = if alpha {
        DynamicImage::ImageRgba8(
            RgbaImage::from_raw(w, h, pixels.into_vec()).ok_or_else(buffer_error)?,
        )
    } else {
        DynamicImage::ImageRgb8(
            RgbImage::from_raw(w, h, pixels.into_vec()).ok_or_else(buffer_error)?,
        )
    };
    image.apply_orientation(orientation);
    let (w, h) = (image.width(), image.height());
    let (bytes, kind) = if alpha {
        (image.into_rgba8().into_raw(), PixelType::U8x4)
    } else {
        (image.into_rgb8().into_raw(), PixelType::U8x3)
    };
    Image::from_vec_u8(w, h, bytes, kind).map_err(|e| ImageError::Undecodable(e.to_string()))
}

/// The size fitting (`w`, `h`) inside a `side` x `side` box, never enlarging.
pub fn fit(w: u32, h: u32, side: u32) -> (u32, u32) {
    if w <= side && h <= side {
        return (w.max(1), h.max(1));
    }
    if w >= h {
        (side, scale_side(h, side, w))
    } else {
        (scale_side(w, side, h), side)
    }
}

/// `value * num / den`, rounded, at least 1.
fn scale_side(value: u32, num: u32, den: u32) -> u32 {
    let scaled = (u64::from(value) * u64::from(num) + u64::from(den) / 2) / u64::from(den.max(1));
    u32::try_from(scaled).unwrap_or(u32::MAX).max(1)
}

fn resize_to_fit(source: &Image<'static>, side: u32) -> Result<Image<'static>, ImageError> {
    let (w, h) = fit(source.width(), source.height(), side);
    resize(source, w, h)
}

fn resize(source: &Image<'static>, w: u32, h: u32) -> Result<Image<'static>, ImageError> {
    if (w, h) == (source.width(), source.height()) {
        return Image::from_vec_u8(w, h, source.buffer().to_vec(), source.pixel_type())
            .map_err(|e| ImageError::Undecodable(e.to_string()));
    }
    let mut target = Image::new(w, h, source.pixel_type());
    Resizer::new()
        .resize(
            source,
            &mut target,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)),
        )
        .map_err(|e| ImageError::Undecodable(format!("resize: {e}")))?;
    Ok(target)
}

fn encode_webp(name: &str, pixels: &Image<'static>) -> Result<EncodedVariant, ImageError> {
    let (w, h) = (pixels.width(), pixels.height());
    let encoder = match pixels.pixel_type() {
        PixelType::U8x4 => webp::Encoder::from_rgba(pixels.buffer(), w, h),
        _ => webp::Encoder::from_rgb(pixels.buffer(), w, h),
    };
    let bytes = encoder.encode(WEBP_QUALITY).to_vec();
    if bytes.is_empty() {
        return Err(ImageError::Undecodable("webp encoding failed".into()));
    }
    Ok(EncodedVariant {
        name: name.to_string(),
        bytes,
        content_type: "image/webp".into(),
        width: w,
        height: h,
    })
}

/// ThumbHash (at most 100x100 input, as the algorithm expects), base64.
fn placeholder(source: &Image<'static>) -> Result<String, ImageError> {
    use base64::Engine as _;
    let small = resize_to_fit(source, 100)?;
    let rgba: Vec<u8> = match small.pixel_type() {
        PixelType::U8x4 => small.buffer().to_vec(),
        _ => small
            .buffer()
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
    };
    let hash =
        thumbhash::rgba_to_thumb_hash(small.width() as usize, small.height() as usize, &rgba);
    Ok(base64::engine::general_purpose::STANDARD.encode(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        // Left half red, right half blue: orientation is visible in the output.
        let image = RgbImage::from_fn(width, height, |x, _| {
            if x < width / 2 {
                image::Rgb([220, 20, 20])
            } else {
                image::Rgb([20, 20, 220])
            }
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&image)
            .expect("encode");
        out
    }

    #[test]
    fn fits_inside_without_enlarging() {
        assert_eq!(fit(4000, 3000, 1280), (1280, 960));
        assert_eq!(fit(3000, 4000, 1280), (960, 1280));
        assert_eq!(fit(100, 50, 1280), (100, 50));
        assert_eq!(fit(10_000, 1, 320), (320, 1));
    }

    #[test]
    fn renders_webp_variants_and_a_placeholder() {
        let rendered = render(&jpeg(2000, 1000), &ImageLimits::default()).expect("render");
        let sizes: Vec<(u32, u32)> = rendered
            .variants
            .iter()
            .map(|v| (v.width, v.height))
            .collect();
        assert_eq!(sizes, vec![(1280, 640), (320, 160)]);
        for variant in &rendered.variants {
            assert!(variant.bytes.starts_with(b"RIFF"));
            assert_eq!(&variant.bytes[8..12], b"WEBP");
            assert!(!variant.bytes.windows(4).any(|w| w == b"EXIF"));
        }
        assert!(!rendered.placeholder.is_empty());
    }

    #[test]
    fn exif_orientation_6_comes_out_upright() {
        let tagged = jpeg_meta::with_segment(&jpeg(800, 400), &jpeg_meta::exif_segment(6));
        let rendered = render(&tagged, &ImageLimits::default()).expect("render");
        let display = &rendered.variants[0];
        assert_eq!((display.width, display.height), (400, 800));
        let decoded = image::load_from_memory(&display.bytes)
            .expect("webp")
            .into_rgb8();
        // Rotated 90 degrees clockwise: the left (red) half is now the top half.
        let top = decoded.get_pixel(200, 100);
        let bottom = decoded.get_pixel(200, 700);
        assert!(
            top[0] > 150 && top[2] < 100,
            "top should be red, is {top:?}"
        );
        assert!(
            bottom[2] > 150 && bottom[0] < 100,
            "bottom should be blue, is {bottom:?}"
        );
    }

    #[test]
    fn bombs_and_truncated_files_are_refused() {
        let limits = ImageLimits {
            max_pixels: 1_000_000,
            ..ImageLimits::default()
        };
        assert!(matches!(
            render(&jpeg(2000, 1000), &limits),
            Err(ImageError::TooLarge { .. })
        ));
        let whole = jpeg(640, 480);
        let truncated = &whole[..whole.len() / 2];
        assert!(matches!(
            render(truncated, &ImageLimits::default()),
            Err(ImageError::Undecodable(_))
        ));
        assert!(render(b"not an image at all", &ImageLimits::default()).is_err());
    }
}
