//! What one render of a chat template may cost. minijinja's fuel counts both the
//! instructions a template runs and the bytes it makes: every string built by `~`, `+`, `*`,
//! `join`, filters, methods and literals, and every byte written, at 64 bytes for one unit of
//! fuel, checked before a concatenation allocates. So a budget of fuel bounds the time and,
//! as no string outlives the render, the memory a render can take, whatever the template.
//!
//! The budget grows with the conversation: a real template spends fuel in proportion to the
//! messages and tools it is given, and the conversation's size is bounded before the render
//! (by the server's request-body limit), so a large but honest request still renders while a
//! template that blows up a small one stops early.

use serde::Serialize;

use super::ChatMessage;

/// Fuel every render has, whatever its input: a million instructions, or 64 MiB of strings
/// made. Real templates spend a few hundred to a few thousand on a short conversation.
pub const BASE_FUEL: u64 = 1_000_000;

/// Fuel per byte of the messages and tools, as JSON. Measured on Llama 3.1's, Qwen3's,
/// Mistral Nemo's and Hermes 3's templates with about 1 MiB of input each (one long message,
/// 34,000 short ones, 1 MiB of tool schemas, 8,000 tool-call turns), the most spent was 2.0
/// per byte (Mistral Nemo, short messages, where the instructions per message dominate): this
/// is twice that.
pub const FUEL_PER_INPUT_BYTE: u64 = 4;

/// Bytes of string one unit of fuel pays for (minijinja's `UNITS_PER_FUEL`, at one unit a
/// byte).
pub const BYTES_PER_FUEL: u64 = 64;

/// The fuel of one render of `messages` with `tools`.
pub fn render_fuel(messages: &[ChatMessage], tools: Option<&serde_json::Value>) -> u64 {
    let input = json_len(messages) + tools.map_or(0, json_len);
    BASE_FUEL.saturating_add(input.saturating_mul(FUEL_PER_INPUT_BYTE))
}

/// The length of `value` as compact JSON, counted without building the text.
fn json_len<T: Serialize + ?Sized>(value: &T) -> u64 {
    let mut counter = ByteCounter(0);
    // Writing to a counter fails only if serializing does, which these types never do; a
    // failure would count short, so the budget would only be smaller.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

struct ByteCounter(u64);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_grows_with_the_conversation_as_json() {
        let one = [ChatMessage::new("user", "hi")];
        let json = serde_json::to_string(&one).unwrap().len() as u64;
        assert_eq!(render_fuel(&one, None), BASE_FUEL + 4 * json);
        let tools = serde_json::json!([{"type": "function", "function": {"name": "f"}}]);
        let with_tools = serde_json::to_string(&tools).unwrap().len() as u64;
        assert_eq!(
            render_fuel(&one, Some(&tools)),
            BASE_FUEL + 4 * (json + with_tools)
        );
    }
}
