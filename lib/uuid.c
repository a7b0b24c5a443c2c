/* UUID text form and generation. */
#include <string.h>
#include <sodium.h>

#include "util_private.h"

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_dash_position(size_t i) { return i == 8 || i == 13 || i == 18 || i == 23; }

int kraken_uuid_parse(kraken_uuid *out, const char *text)
{
    if (out == NULL || text == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_uuid_parse: NULL argument");
    if (strlen(text) != KRAKEN_UUID_STRLEN)
        return kraken__err(KRAKEN_EPARSE, "invalid UUID '%.64s': expected 36 characters", text);
    kraken_uuid id;
    size_t byte = 0;
    for (size_t i = 0; i < KRAKEN_UUID_STRLEN; i++) {
        if (is_dash_position(i)) {
            if (text[i] != '-')
                return kraken__err(KRAKEN_EPARSE, "invalid UUID '%s': expected '-' at %zu", text, i);
            continue;
        }
        int hi = hex_value(text[i]), lo = hex_value(text[i + 1]);
        if (hi < 0 || lo < 0)
            return kraken__err(KRAKEN_EPARSE, "invalid UUID '%s': bad hex digit at %zu", text,
                               hi < 0 ? i : i + 1);
        id.bytes[byte++] = (uint8_t)(hi << 4 | lo);
        i++;
    }
    *out = id;
    return KRAKEN_OK;
}

char *kraken_uuid_format(const kraken_uuid *id, char buf[KRAKEN_UUID_STRLEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    size_t pos = 0;
    for (size_t byte = 0; byte < 16; byte++) {
        if (is_dash_position(pos))
            buf[pos++] = '-';
        buf[pos++] = digits[id->bytes[byte] >> 4];
        buf[pos++] = digits[id->bytes[byte] & 0xf];
    }
    buf[pos] = '\0';
    return buf;
}

bool kraken_uuid_is_zero(const kraken_uuid *id)
{
    static const kraken_uuid zero;
    return id == NULL || memcmp(id, &zero, sizeof zero) == 0;
}

int kraken_uuid_compare(const kraken_uuid *a, const kraken_uuid *b)
{
    return memcmp(a->bytes, b->bytes, sizeof a->bytes);
}

int kraken_uuid_generate(kraken_uuid *out)
{
    if (out == NULL)
        return kraken__err(KRAKEN_EINVAL, "kraken_uuid_generate: NULL argument");
    if (sodium_init() < 0)
        return kraken__err(KRAKEN_EIO, "libsodium initialisation failed");
    randombytes_buf(out->bytes, sizeof out->bytes);
    out->bytes[6] = (uint8_t)((out->bytes[6] & 0x0f) | 0x40); /* version 4 */
    out->bytes[8] = (uint8_t)((out->bytes[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    return KRAKEN_OK;
}
