/* Placeholder entry until the driver lands (replaced in the next commit). */
int main(void) { return 0; }
