#!/bin/sh
# Makes the legacy DES vectors with OpenSSL (an implementation independent of Vault's),
# as the legacy netdisk wrote them: DES-CBC with an all-zero IV or DES-ECB, PKCS#5
# padding. OpenSSL 3 keeps DES in its legacy provider. Run from this directory.
# Checked by tests/format_vectors.rs (one test per *.des file).
set -eu
KEY=0123456789abcdef
des() { openssl enc "-des-$1" -K "$KEY" ${2:+-iv $2} -provider legacy -provider default; }
rawdes() { openssl enc -des-ecb -K "$KEY" -nopad -provider legacy -provider default; }

# Plaintexts: empty, 7 bytes, 8 bytes (a whole block of padding follows), 1000 bytes of
# text, and 32 bytes of one repeated block (ECB shows the repetition, CBC does not).
: > empty.plain
printf 'legacy!' > 7.plain
printf 'DES-8byt' > 8.plain
python3 -c "import sys; sys.stdout.write(''.join('line %03d of the old netdisk file\n' % i for i in range(1000))[:1000])" > 1000.plain
printf 'SAMEBLOKSAMEBLOKSAMEBLOKSAMEBLOK' > repeated.plain

for p in empty 7 8 1000 repeated; do
  des cbc 0000000000000000 < "$p.plain" > "cbc_$p.des"
  des ecb < "$p.plain" > "ecb_$p.des"
done

# Final blocks with invalid padding, encrypted raw (no padding added by OpenSSL): each
# must be refused as bad padding.
printf 'abcdefg\000' | rawdes > bad_pad_zero.des        # pad byte 0
printf 'abcdefg\011' | rawdes > bad_pad_nine.des        # pad byte 9 > 8
printf 'abcde\002\003\003' | rawdes > bad_pad_unequal.des # pad bytes differ
printf 'abcdefghijklmnop' | rawdes > bad_pad_text.des   # no padding at all
