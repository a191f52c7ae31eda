//! Multiple-choice items read from JSONL, and the text lm-evaluation-harness builds from
//! them: the question as its MMLU tasks ask it, the continuations each choice is scored
//! as, and the few-shot examples before it.
//!
//! Two shapes are read:
//! - question style (MMLU, WMDP): `{"question", "choices": [..], "answer": i or "A",
//!   "subject"?}`, asked as `"{question}\nA. ..\nB. ..\nAnswer:"` with continuations
//!   `" A"`, `" B"`, …;
//! - completion style (HellaSwag, already preprocessed): `{"context", "endings": [..],
//!   "label": i}`, with continuations `" {ending}"`.

use serde_json::Value;

use crate::EvalError;

/// Between a context and its continuation (lm-eval's `target_delimiter`).
const TARGET_DELIMITER: &str = " ";
/// Between few-shot examples, and after the last (lm-eval's `fewshot_delimiter`).
const FEWSHOT_DELIMITER: &str = "\n\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemStyle {
    Question,
    Completion,
}

/// One item of a task.
#[derive(Clone, Debug)]
pub struct Item {
    /// `"id"` when the line has one, else its line number (from 1).
    pub id: String,
    pub style: ItemStyle,
    /// The text a choice continues (without few-shot examples).
    pub text: String,
    /// What each choice is scored as, without the delimiter (`"A"`, or an ending).
    pub choices: Vec<String>,
    pub gold: usize,
    pub subject: Option<String>,
}

impl Item {
    /// The continuation of choice `i`, as scored after the context.
    pub fn continuation(&self, i: usize) -> String {
        format!("{TARGET_DELIMITER}{}", self.choices[i])
    }

    /// This item as a solved few-shot example.
    fn as_example(&self) -> String {
        format!("{}{}", self.text, self.continuation(self.gold))
    }
}

/// Reads a task file: one JSON object per non-empty line, all of one style.
pub fn parse_task(jsonl: &str) -> Result<Vec<Item>, EvalError> {
    let mut items: Vec<Item> = Vec::new();
    for (index, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = index + 1;
        let bad = |why: String| EvalError::Invalid(format!("line {line_no}: {why}"));
        let value: Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not a JSON object: {e}")))?;
        let item = parse_item(&value, line_no).map_err(bad)?;
        if let Some(first) = items.first() {
            if first.style != item.style {
                return Err(bad(
                    "items of both styles (question and completion) in one file".into(),
                ));
            }
        }
        items.push(item);
    }
    if items.is_empty() {
        return Err(EvalError::Invalid("the task file has no items".into()));
    }
    Ok(items)
}

fn strings(value: &Value, key: &str) -> Result<Vec<String>, String> {
    let list = value
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("\"{key}\" must be a list of strings"))?;
    let out: Option<Vec<String>> = list.iter().map(|v| v.as_str().map(str::to_owned)).collect();
    let out = out.ok_or_else(|| format!("\"{key}\" must be a list of strings"))?;
    if out.len() < 2 {
        return Err(format!("\"{key}\" needs at least two choices"));
    }
    Ok(out)
}

fn letter(i: usize) -> String {
    char::from(b'A' + i as u8).to_string()
}

/// The gold index, given as a number or (question style) as a letter.
fn gold_index(value: &Value, key: &str, n_choices: usize) -> Result<usize, String> {
    let gold = match value.get(key) {
        Some(Value::Number(n)) => n.as_u64().map(|n| n as usize),
        Some(Value::String(s)) => match s.trim().as_bytes() {
            [c @ b'A'..=b'Z'] => Some(usize::from(c - b'A')),
            _ => s.trim().parse().ok(),
        },
        _ => None,
    };
    gold.filter(|&g| g < n_choices).ok_or_else(|| {
        format!("\"{key}\" must be the index (or letter) of one of the {n_choices} choices")
    })
}

fn parse_item(value: &Value, line_no: usize) -> Result<Item, String> {
    if !value.is_object() {
        return Err("not a JSON object".into());
    }
    let id = match value.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => line_no.to_string(),
    };
    if let Some(question) = value.get("question") {
        let question = question.as_str().ok_or("\"question\" must be a string")?;
        let choices = strings(value, "choices")?;
        if choices.len() > 26 {
            return Err("at most 26 choices (A to Z)".into());
        }
        let gold = gold_index(value, "answer", choices.len())?;
        let mut text = question.trim().to_owned();
        for (i, choice) in choices.iter().enumerate() {
            text.push_str(&format!("\n{}. {choice}", letter(i)));
        }
        text.push_str("\nAnswer:");
        Ok(Item {
            id,
            style: ItemStyle::Question,
            text,
            choices: (0..choices.len()).map(letter).collect(),
            gold,
            subject: value
                .get("subject")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    } else if let Some(context) = value.get("context") {
        let context = context.as_str().ok_or("\"context\" must be a string")?;
        let endings = strings(value, "endings")?;
        let gold = gold_index(value, "label", endings.len())?;
        Ok(Item {
            id,
            style: ItemStyle::Completion,
            text: context.to_owned(),
            choices: endings,
            gold,
            subject: None,
        })
    } else {
        Err(
            "neither a question item ({\"question\", \"choices\", \"answer\"}) nor a \
             completion item ({\"context\", \"endings\", \"label\"})"
                .into(),
        )
    }
}

/// The context item `index` is scored after: `n_shots` solved examples (the first items
/// of the task other than this one), then its own text.
pub fn context_with_shots(items: &[Item], index: usize, n_shots: usize) -> String {
    let mut context = String::new();
    for shot in items
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != index)
        .take(n_shots)
    {
        context.push_str(&shot.1.as_example());
        context.push_str(FEWSHOT_DELIMITER);
    }
    context.push_str(&items[index].text);
    context
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_items_are_asked_as_mmlu_asks_them() {
        let items = parse_task(
            r#"{"question": " What is 2+2? ", "choices": ["3", "4"], "answer": 1, "subject": "math"}
{"question": "Sky?", "choices": ["blue", "green", "red"], "answer": "A"}
"#,
        )
        .unwrap();
        assert_eq!(items[0].text, "What is 2+2?\nA. 3\nB. 4\nAnswer:");
        assert_eq!(items[0].continuation(1), " B");
        assert_eq!(items[0].subject.as_deref(), Some("math"));
        assert_eq!((items[1].gold, items[1].id.as_str()), (0, "2"));
        assert_eq!(
            context_with_shots(&items, 1, 1),
            "What is 2+2?\nA. 3\nB. 4\nAnswer: B\n\nSky?\nA. blue\nB. green\nC. red\nAnswer:"
        );
        // The item itself is never its own example.
        assert!(context_with_shots(&items, 0, 5).starts_with("Sky?"));
    }

    #[test]
    fn bad_items_name_their_line() {
        for (text, needle) in [
            ("", "no items"),
            ("{\"question\": \"q\", \"choices\": [\"a\"], \"answer\": 0}", "line 1: \"choices\" needs"),
            ("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 2}", "index (or letter)"),
            ("\n[1, 2]", "line 2: not a JSON object"),
            ("{\"context\": \"c\", \"endings\": [\"a\", \"b\"], \"label\": 0}\n{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 0}", "both styles"),
            ("{\"prompt\": \"x\"}", "neither"),
        ] {
            let err = parse_task(text).err().unwrap().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
