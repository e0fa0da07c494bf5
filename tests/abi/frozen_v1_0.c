/* The frozen copy of the released 1.0 headers (tests/abi/v1_0) must keep the 1.0 layout:
 * the generated asserts are compiled against it, and a plugin built from it is loaded by the
 * current host (tests/abi/CMakeLists.txt). */
int ferrum_layout_v1_0_checked(void);
int main(void) { return ferrum_layout_v1_0_checked() == 1 ? 0 : 1; }
