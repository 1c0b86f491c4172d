/*
 * Tests for quantity.c: the Kubernetes quantity grammar, exact rounding,
 * overflow, and both formatters.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quantity.h"

#define KI (UINT64_C(1) << 10)
#define MI (UINT64_C(1) << 20)
#define GI (UINT64_C(1) << 30)
#define TI (UINT64_C(1) << 40)
#define PI (UINT64_C(1) << 50)
#define EI (UINT64_C(1) << 60)

static const uint64_t SENTINEL = UINT64_C(0xdeadbeefcafe);

static void expect_bytes(const char *s, uint64_t want)
{
	uint64_t got = SENTINEL;
	int r = quantity_parse(s, &got);

	if (r != 0 || got != want)
		fail_msg("\"%s\": r=%d got=%llu want=%llu", s, r, (unsigned long long)got,
			 (unsigned long long)want);
}

static void expect_error(const char *s, int want)
{
	uint64_t got = SENTINEL;
	int r = quantity_parse(s, &got);

	if (r != want)
		fail_msg("\"%s\": r=%d want %d", s, r, want);
	/* The out-param is untouched on failure. */
	assert_int_equal(got, SENTINEL);
}

static void test_plain_and_suffixes(void **state)
{
	(void)state;
	expect_bytes("0", 0);
	expect_bytes("1", 1);
	expect_bytes("007", 7);
	expect_bytes("1073741824", GI);
	expect_bytes("5Gi", 5 * GI);
	expect_bytes("500Mi", 500 * MI);
	expect_bytes("1Ki", KI);
	expect_bytes("3Ti", 3 * TI);
	expect_bytes("2Pi", 2 * PI);
	expect_bytes("15Ei", 15 * EI);
	expect_bytes("1k", 1000);
	expect_bytes("1M", 1000 * 1000);
	expect_bytes("1G", UINT64_C(1000000000));
	expect_bytes("2T", UINT64_C(2000000000000));
	expect_bytes("1P", UINT64_C(1000000000000000));
	expect_bytes("18E", UINT64_C(18000000000000000000));
	expect_bytes("18446744073709551615", UINT64_MAX);
}

static void test_zero_forms(void **state)
{
	(void)state;
	expect_bytes("0Gi", 0);
	expect_bytes("0.0", 0);
	expect_bytes(".0", 0);
	expect_bytes("0.", 0);
	expect_bytes("000", 0);
	expect_bytes("0e999999999999999999999", 0);
	expect_bytes("0.000Ei", 0);
}

static void test_fractions(void **state)
{
	(void)state;
	expect_bytes("1.5Ti", TI + TI / 2);
	expect_bytes("1.5Ti", UINT64_C(1649267441664));
	expect_bytes("0.5Ki", 512);
	expect_bytes(".5Ki", 512);
	expect_bytes("5.", 5);
	expect_bytes("5.Gi", 5 * GI);
	expect_bytes("1.25Gi", GI + GI / 4);
	expect_bytes("2.5G", UINT64_C(2500000000));
	expect_bytes("1.000", 1);
	/* Trailing zeros far past what a u64 holds change nothing. */
	expect_bytes("3.000000000000000000000000000000000000000000Mi", 3 * MI);
	/* 2^64 - 1.15 rounds up to the largest u64. */
	expect_bytes("15.999999999999999999Ei", UINT64_MAX);
}

static void test_rounding_up(void **state)
{
	(void)state;
	expect_bytes("1.1", 2);
	expect_bytes(".5", 1);
	expect_bytes("0.0000000000000000000000000000001", 1);
	expect_bytes("1.0000000000000000000000000000001", 2);
	/* 0.1 Ki is 102.4 bytes. */
	expect_bytes("0.1Ki", 103);
	expect_bytes("0.000000000000000000001Ei", 1);
	/* 1.1k and 0.001k are whole; 0.0001k is a tenth of a byte. */
	expect_bytes("1.1k", 1100);
	expect_bytes("0.001k", 1);
	expect_bytes("0.0001k", 1);
	expect_bytes("0.0015k", 2);
}

static void test_exponents(void **state)
{
	(void)state;
	expect_bytes("1e9", UINT64_C(1000000000));
	expect_bytes("1E9", UINT64_C(1000000000));
	expect_bytes("1e+3", 1000);
	expect_bytes("1e0", 1);
	expect_bytes("1.5e3", 1500);
	expect_bytes(".5e1", 5);
	expect_bytes("12345e-2", 124);
	expect_bytes("12300e-2", 123);
	expect_bytes("1e-3", 1);
	expect_bytes("1e-99999999999999999999", 1);
	expect_bytes("0.00001e5", 1);
	expect_bytes("1844674407370955161.5e1", UINT64_MAX);
	/* "E" alone is exa, not an exponent. */
	expect_bytes("2E", UINT64_C(2000000000000000000));
}

/* Random fractions against a 128-bit reference computation. */
static void test_against_reference(void **state)
{
	static const struct {
		const char *suffix;
		uint64_t mult;
	} sfx[] = {
		{ "", 1 }, { "Ki", KI }, { "Mi", MI }, { "Gi", GI }, { "Ti", TI },
		{ "k", 1000 }, { "M", 1000000 }, { "G", 1000000000 },
	};
	char s[64];

	(void)state;
	srand(12345);
	for (int i = 0; i < 20000; i++) {
		unsigned int k = (unsigned int)rand() % (sizeof(sfx) / sizeof(sfx[0]));
		uint64_t whole = (uint64_t)rand() % 100000;
		unsigned int digits = (unsigned int)rand() % 10;
		uint64_t frac = 0, pow10 = 1;
		unsigned __int128 num, want;

		for (unsigned int d = 0; d < digits; d++) {
			frac = frac * 10 + (uint64_t)rand() % 10;
			pow10 *= 10;
		}
		if (digits)
			snprintf(s, sizeof(s), "%llu.%0*llu%s", (unsigned long long)whole, (int)digits,
				 (unsigned long long)frac, sfx[k].suffix);
		else
			snprintf(s, sizeof(s), "%llu%s", (unsigned long long)whole, sfx[k].suffix);
		num = ((unsigned __int128)whole * pow10 + frac) * sfx[k].mult;
		want = (num + pow10 - 1) / pow10;
		expect_bytes(s, (uint64_t)want);
	}
}

static void test_malformed(void **state)
{
	static const char *const bad[] = {
		"", " 1", "1 ", "1 Gi", "+1", "-1", "-0", "+5Gi", "1K", "1KI", "1ki", "1gi",
		"Gi", "Ki", "k", "E", "e3", ".", ".Gi", "1.2.3", "1..", "1e", "1e+", "1e-",
		"1ee3", "1e3Gi", "1e3.5", "1Gib", "1GiB", "1m", "500m", "1x", "1i", "1,5",
		"0x10", "1_000", "1\n", "\t1", "1e 3", "1Gi ", "1.5.Gi", "1Mii",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_error(bad[i], -EINVAL);
	expect_error(NULL, -EINVAL);
}

static void test_overflow(void **state)
{
	(void)state;
	expect_error("16Ei", -ERANGE);
	expect_error("18446744073709551616", -ERANGE);
	expect_error("99999999999999999999999999", -ERANGE);
	expect_error("19E", -ERANGE);
	expect_error("1e20", -ERANGE);
	expect_error("1e99999999999999999999", -ERANGE);
	expect_error("18446744073709551615.1", -ERANGE);
	expect_error("16384Pi", -ERANGE);
	/* 2^64 - 0.115: whole bytes only, so it rounds up to 2^64. */
	expect_error("15.9999999999999999999Ei", -ERANGE);
}

static void test_format(void **state)
{
	char buf[32];
	int n;

	(void)state;
	n = quantity_format(0, buf, sizeof(buf));
	assert_int_equal(n, 1);
	assert_string_equal(buf, "0");
	n = quantity_format(5 * GI, buf, sizeof(buf));
	assert_int_equal(n, (int)strlen("5Gi"));
	assert_string_equal(buf, "5Gi");
	quantity_format(GI + GI / 2, buf, sizeof(buf));
	assert_string_equal(buf, "1536Mi");
	quantity_format(1000, buf, sizeof(buf));
	assert_string_equal(buf, "1000");
	quantity_format(KI, buf, sizeof(buf));
	assert_string_equal(buf, "1Ki");
	quantity_format(15 * EI, buf, sizeof(buf));
	assert_string_equal(buf, "15Ei");
	quantity_format(UINT64_MAX, buf, sizeof(buf));
	assert_string_equal(buf, "18446744073709551615");

	/* Exactly enough room, then one byte short. */
	assert_int_equal(quantity_format(5 * GI, buf, 4), 3);
	assert_string_equal(buf, "5Gi");
	assert_int_equal(quantity_format(5 * GI, buf, 3), -ENOSPC);
	assert_int_equal(quantity_format(5 * GI, NULL, 0), -ENOSPC);
}

static void round_trip(uint64_t v)
{
	char buf[32];
	uint64_t back = 0;

	assert_true(quantity_format(v, buf, sizeof(buf)) > 0);
	assert_int_equal(quantity_parse(buf, &back), 0);
	if (back != v)
		fail_msg("%llu formatted as \"%s\" parses as %llu", (unsigned long long)v, buf,
			 (unsigned long long)back);
}

static void test_format_round_trip(void **state)
{
	(void)state;
	round_trip(0);
	round_trip(1);
	round_trip(UINT64_MAX);
	round_trip(15 * EI);
	for (unsigned int shift = 0; shift < 64; shift++) {
		round_trip(UINT64_C(1) << shift);
		round_trip((UINT64_C(1) << shift) - 1);
		round_trip(((UINT64_C(1) << shift) | 1) * 3);
	}
	srand(777);
	for (int i = 0; i < 10000; i++) {
		uint64_t v = ((uint64_t)rand() << 33) ^ ((uint64_t)rand() << 11) ^ (uint64_t)rand();

		round_trip(v);
		round_trip(v << (rand() % 30) & ~(KI - 1));
	}
}

static void expect_human(uint64_t bytes, const char *want)
{
	char buf[32];

	memset(buf, 'x', sizeof(buf));
	quantity_format_human(bytes, buf, sizeof(buf));
	if (strcmp(buf, want) != 0)
		fail_msg("%llu: \"%s\", want \"%s\"", (unsigned long long)bytes, buf, want);
}

static void test_format_human(void **state)
{
	char small[3];

	(void)state;
	expect_human(0, "0");
	expect_human(1, "1");
	expect_human(1023, "1023");
	expect_human(KI, "1K");
	expect_human(KI + 1, "1.1K");
	expect_human(KI + KI / 2, "1.5K");
	expect_human(GI + GI / 2, "1.5G");
	expect_human(512 * MI, "512M");
	expect_human(10 * GI, "10G");
	expect_human(10 * GI - 1, "10G");
	/* 9.95 GiB rounds up to 10.0, printed without a decimal. */
	expect_human(10 * GI - GI / 20, "10G");
	expect_human(9 * GI + 1, "9.1G");
	expect_human(11 * GI + 1, "12G");
	/* Rounding up to 1024 of a unit moves to the next unit. */
	expect_human(MI - 1, "1M");
	expect_human(1023 * MI + 1, "1G");
	expect_human(TI, "1T");
	expect_human(3 * PI, "3P");
	expect_human(EI, "1E");
	expect_human(UINT64_MAX, "16E");

	/* Truncated, but always terminated. */
	quantity_format_human(GI + GI / 2, small, sizeof(small));
	assert_int_equal(strlen(small), 2);
	assert_memory_equal(small, "1.", 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_and_suffixes),
		cmocka_unit_test(test_zero_forms),
		cmocka_unit_test(test_fractions),
		cmocka_unit_test(test_rounding_up),
		cmocka_unit_test(test_exponents),
		cmocka_unit_test(test_against_reference),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_overflow),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_format_round_trip),
		cmocka_unit_test(test_format_human),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
