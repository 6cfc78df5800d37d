#include <cstdio>
int main() { std::puts("unirep"); return 0; }
