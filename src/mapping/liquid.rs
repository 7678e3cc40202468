//! Placeholder until the Liquid module lands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LiquidError(pub String);
#[derive(Debug)]
pub struct LiquidTemplate;
impl LiquidTemplate {
    pub fn parse(_src: &str) -> Result<LiquidTemplate, LiquidError> {
        Err(LiquidError("liquid is not available yet".into()))
    }
    pub fn render(&self, _payload: &serde_json::Value) -> Result<String, LiquidError> {
        Err(LiquidError("liquid is not available yet".into()))
    }
}
