//! The one font the plots and annotated photos draw text with: DejaVu Sans compiled
//! in, so no system font or fontconfig is needed (containers have none).

use std::sync::Once;

use plotters::style::FontStyle;

/// The family name text styles ask for.
pub const FONT: &str = "sans-serif";

/// Registers the font with plotters (once per process).
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Only fails on a malformed font, and this one is fixed at build time.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}
