//! Comma-separated values as RFC 4180 writes them (the suites' CSV files, spreadsheets of
//! labelled answers): fields in double quotes may hold commas, line breaks and doubled
//! quotes; lines end in LF or CRLF.

/// The records of `text`, each a list of fields; a blank line is no record. An
/// unterminated quoted field is an error naming the line it began on.
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    // Whether the current field was quoted, so that `""` alone is an empty field and a
    // record of one empty unquoted field (a blank line) is dropped.
    let mut quoted = false;
    let mut line = 1;
    let mut quote_line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !quoted => {
                in_quotes = true;
                quoted = true;
                quote_line = line;
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                line += 1;
                end_record(&mut records, &mut record, &mut field, quoted);
                quoted = false;
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(format!("line {quote_line}: a quoted field is not closed"));
    }
    end_record(&mut records, &mut record, &mut field, quoted);
    Ok(records)
}

fn end_record(
    records: &mut Vec<Vec<String>>,
    record: &mut Vec<String>,
    field: &mut String,
    quoted: bool,
) {
    let blank = record.is_empty() && field.is_empty() && !quoted;
    record.push(std::mem::take(field));
    let record = std::mem::take(record);
    if !blank {
        records.push(record);
    }
}

/// A CSV file with a header: each record read by column name.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn parse(text: &str) -> Result<Table, String> {
        let mut records = parse_csv(text)?.into_iter();
        let header: Vec<String> = records
            .next()
            .ok_or("the file is empty")?
            .into_iter()
            .map(|h| h.trim().to_string())
            .collect();
        let rows: Vec<Vec<String>> = records.collect();
        for (i, row) in rows.iter().enumerate() {
            if row.len() != header.len() {
                return Err(format!(
                    "record {} has {} fields, the header has {}",
                    i + 1,
                    row.len(),
                    header.len()
                ));
            }
        }
        Ok(Table { header, rows })
    }

    /// The index of the first of `names` that is a column.
    pub fn column(&self, names: &[&str]) -> Option<usize> {
        names.iter().find_map(|name| {
            self.header
                .iter()
                .position(|h| h.eq_ignore_ascii_case(name))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_hold_commas_quotes_and_lines() {
        let text = "id,text\r\n1,\"a, \"\"b\"\"\nc\"\n\n2,plain\n3,\"\"\n";
        let records = parse_csv(text).unwrap();
        assert_eq!(
            records,
            vec![
                vec!["id", "text"],
                vec!["1", "a, \"b\"\nc"],
                vec!["2", "plain"],
                vec!["3", ""],
            ]
        );
    }

    #[test]
    fn bad_files_say_where() {
        assert!(parse_csv("a,b\n1,\"open\n2,x\n")
            .unwrap_err()
            .contains("line 2"));
        let err = Table::parse("a,b\n1,2,3\n").err().unwrap();
        assert!(err.contains("record 1 has 3 fields"), "{err}");
        assert!(Table::parse("").is_err());
    }
}
