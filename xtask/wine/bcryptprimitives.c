/*
 * bcryptprimitives.dll shim for Wine 8: ProcessPrng only.
 *
 * WHY: Rust's standard library (1.78 and later) gets its random bytes (HashMap seeds) from
 * ProcessPrng, imported from bcryptprimitives.dll, so every Rust program for Windows
 * imports it. Wine added that DLL in 8.13; Wine 8.0 (Debian 12) has none, and
 * hotswapctl.exe does not start there ("Library bcryptprimitives.dll ... not found").
 *
 * WHEN: `cargo xtask wine` (xtask/src/wine/shim.rs) looks at the fresh prefix: only when
 * C:\windows\system32\bcryptprimitives.dll is missing or lacks ProcessPrng is this file
 * compiled (x86_64-w64-mingw32-gcc) next to hotswapctl.exe, and only the client's processes
 * are told to load it (WINEDLLOVERRIDES=bcryptprimitives=n). With a newer Wine it is not
 * used, and the stage says so. To check a Wine by hand after a run:
 *
 *     x86_64-w64-mingw32-objdump -p target/wine/prefix/drive_c/windows/system32/bcryptprimitives.dll | grep ProcessPrng
 *
 * (no such file, or no line: this shim is needed).
 *
 * WHAT: ProcessPrng(data, length) fills `data` with `length` random bytes and always
 * returns TRUE, as documented. The bytes come from BCryptGenRandom with the system's
 * preferred generator, which Wine 8 implements. The driver under test never sees this DLL:
 * it is a user-mode library of the client only.
 */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG))) {
            /* ProcessPrng cannot fail; a generator that does is not something to go on with. */
            RaiseFailFastException(NULL, NULL, 0);
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
