//! `--write-out table`: rows drawn in a box, as etcdctl draws them.

use super::Output;

/// Prints `rows` under `headers` as a table when `out` asks for one, else one row per line
/// with its cells separated by spaces (what `simple` prints for a list).
pub(crate) fn print(headers: &[&str], rows: impl IntoIterator<Item = Vec<String>>, out: Output) {
    let rows: Vec<Vec<String>> = rows.into_iter().collect();
    if out != Output::Table {
        for row in &rows {
            println!("{}", row.join(" "));
        }
        return;
    }
    print!("{}", draw(headers, &rows));
}

/// The table as text.
fn draw(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let rule = widths.iter().fold(String::from("+"), |mut s, w| {
        s.push_str(&"-".repeat(w + 2));
        s.push('+');
        s
    });
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        widths.iter().zip(cells).fold(String::from("|"), |mut s, (w, cell)| {
            let pad = w - cell.chars().count();
            s.push_str(&format!(" {cell}{} |", " ".repeat(pad)));
            s
        })
    };
    let mut text = format!("{rule}\n");
    text.push_str(&line(
        &mut headers
            .iter()
            .map(|h| h.to_uppercase())
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    ));
    text.push('\n');
    text.push_str(&rule);
    text.push('\n');
    for row in rows {
        text.push_str(&line(&mut row.iter().map(String::as_str)));
        text.push('\n');
    }
    text.push_str(&rule);
    text.push('\n');
    text
}
