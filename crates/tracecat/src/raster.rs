//! SVG to PNG, with `resvg` and the system's fonts.

use anyhow::{bail, Context, Result};
use resvg::tiny_skia::{Pixmap, Transform};
use resvg::usvg::{Options, Tree};

/// Renders an SVG document (from [`crate::flame::render_svg`]) to PNG bytes at `scale` (2.0 for
/// a high-density picture). Text needs a font on the system: the labels use DejaVu Sans Mono
/// (Debian: `fonts-dejavu-core`), or any monospace font fontconfig knows.
pub fn svg_to_png(svg: &str, scale: f32) -> Result<Vec<u8>> {
    if !(scale.is_finite() && scale > 0.0 && scale <= 8.0) {
        bail!("the scale must be more than 0 and at most 8, not {scale}");
    }
    let mut options = Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_system_fonts();
    if fonts.is_empty() {
        bail!(
            "no fonts found on this system, so the PNG would have no text: install one \
             (Debian: apt-get install fonts-dejavu-core) or write an SVG with --svg"
        );
    }
    fonts.set_monospace_family("DejaVu Sans Mono");
    let tree = Tree::from_str(svg, &options).context("cannot read the SVG document")?;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(scale)
        .context("the picture is empty")?;
    let mut pixmap = Pixmap::new(size.width(), size.height())
        .with_context(|| format!("cannot make a {}x{} picture", size.width(), size.height()))?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().context("cannot encode the PNG")
}
