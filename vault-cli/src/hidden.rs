//! A secret typed at the terminal: echo is turned off *before* the prompt is written, as
//! sudo and ssh do, so a line typed or pasted the moment the prompt appears is never shown.
//! (A prompt written first and echo turned off after it leaves a moment in which the
//! terminal still echoes.)

use std::fs::File;
use std::io::{self, Write};

use rustix::termios::{LocalModes, OptionalActions, Termios, tcgetattr, tcsetattr};
use zeroize::Zeroizing;

/// The terminal's settings as they were, put back when dropped (after an error too).
struct Restore<'a> {
    tty: &'a File,
    saved: Termios,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let _ = tcsetattr(self.tty, OptionalActions::Now, &self.saved);
    }
}

/// Writes `prompt` to the terminal with echo already off and reads one line without echo.
pub fn ask(prompt: &str) -> io::Result<Zeroizing<String>> {
    let Ok(tty) = File::options().read(true).write(true).open("/dev/tty") else {
        // No controlling terminal to quiet: rpassword says what is wrong.
        return rpassword::prompt_password(prompt).map(Zeroizing::new);
    };
    let saved = tcgetattr(&tty)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&tty, OptionalActions::Now, &quiet)?;
    let _restore = Restore { tty: &tty, saved };
    (&tty).write_all(prompt.as_bytes())?;
    (&tty).flush()?;
    // rpassword reads /dev/tty in raw mode and puts back the settings it found (ours,
    // without echo); `_restore` then brings back the user's.
    rpassword::read_password().map(Zeroizing::new)
}
