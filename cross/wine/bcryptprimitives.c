/* ProcessPrng for wine before 9.0, which has no bcryptprimitives.dll: Rust's std (1.78 on)
 * takes its random numbers from it. Built with mingw-w64 by cross/windows-check.sh into the
 * wine prefix only; Windows 10 and later have the real one. */
#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG n = len > 0x7fffffff ? 0x7fffffff : (ULONG)len;
        if (!RtlGenRandom(data, n))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
