/* jsondepth.c - the nesting-depth pre-scan of JSON text (see jsondepth.h). */
#include "config.h"

#include "jsondepth.h"

long esb_jsondepth_scan(const void *text, size_t n, int max, int *line, int *col)
{
    const unsigned char *p = text;
    int depth = 0, in_str = 0, ln = 1;
    size_t line_start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c == '\n') {
            ln++;
            line_start = i + 1;
        } else if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max) {
                if (line) *line = ln;
                if (col) *col = (int)(i - line_start + 1);
                return (long)i;
            }
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return -1;
}
