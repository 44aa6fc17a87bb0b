"""An SMTP server for the mail test: aiosmtpd with TLS and AUTH, storing what it receives
in a Maildir. Usage: smtp_tls_server.py starttls|smtps PORT MAILDIR CERT KEY USER PASSWORD
"""
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

mode, port, maildir, cert, key, user, password = sys.argv[1:8]
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    return AuthResult(success=ok, handled=False)


common = dict(
    hostname="127.0.0.1",
    port=int(port),
    authenticator=authenticate,
    auth_required=True,
)
if mode == "starttls":
    controller = Controller(
        Mailbox(maildir), tls_context=context, require_starttls=True,
        auth_require_tls=True, **common
    )
else:
    controller = Controller(
        Mailbox(maildir), ssl_context=context, auth_require_tls=False, **common
    )
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
