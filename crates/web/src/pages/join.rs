//! `/join#TICKET`: the page a room's invite link opens. The ticket is in
//! the fragment, which the browser never sends, so it is in no server or
//! proxy log; the script puts it in the form, and joining takes a click
//! (a link alone never joins a room).

use maud::{Markup, html};

use super::{Tab, layout};

pub(crate) async fn page() -> Markup {
    layout(
        "Join a room",
        Tab::Rooms,
        html! {
            section.card {
                h2 { "Join a room" }
                p #join-hint { "Paste the room's ticket, or open the invite link you were given." }
                form #join method="post" action="/join" {
                    input #join-ticket type="text" name="ticket" placeholder="ticket" required autocomplete="off";
                    input type="text" name="name" placeholder="local name (optional)" maxlength="64";
                    button #join-button type="submit" { "Join" }
                }
            }
        },
    )
}
